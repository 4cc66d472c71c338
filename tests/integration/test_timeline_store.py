"""The timeline store against the real PostgreSQL: idempotence, erasure, ordering, paging, rebuild switch."""

import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import JsonValue

from services.timeline.domain import BatchPlan, Cursor, PageQuery, item_of, plan_batch
from services.timeline.store import TimelineStore
from shared.db import create_pool
from shared.events import AllowedTouch, EraseMarker, Purpose, TouchEvent

START = datetime(2026, 10, 1, tzinfo=UTC)


def plan(records: Sequence[AllowedTouch | EraseMarker]) -> BatchPlan:
    return plan_batch([item_of(record) for record in records])


PROFILING = frozenset({Purpose.PROFILING})


@pytest.fixture
async def store(database: str) -> AsyncIterator[TimelineStore]:
    pool = await create_pool(database)
    try:
        yield TimelineStore(pool)
    finally:
        await pool.close()


def touch(
    event_id: str,
    customer: str,
    minutes: int,
    type_: str = "page.viewed",
    channel: str = "web",
    properties: dict[str, JsonValue] | None = None,
) -> AllowedTouch:
    event = TouchEvent(
        event_id=event_id,
        customer_id=customer,
        type=type_,
        channel=channel,
        occurred_at=START + timedelta(minutes=minutes),
        received_at=START,
        source="t",
        properties=properties or {},
    )
    return AllowedTouch(event=event, purposes=PROFILING)


async def all_pages(store: TimelineStore, customer: str, limit: int, **filters: object) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        query = PageQuery((customer,), limit, after, frozenset(), frozenset(), None, None)
        query = PageQuery(**{**query.__dict__, **filters})
        rows = await store.page(query) or []
        seen += [row.event_id for row in rows]
        if len(rows) < limit:
            return seen
        after = Cursor(rows[-1].occurred_at, rows[-1].event_id)


async def test_replays_store_and_count_each_event_once(store: TimelineStore, unique: str) -> None:
    customer = f"ida-{unique}"
    batch = [
        touch(f"{unique}-1", customer, 10, "purchase", "web", {"amount": 99.5}),
        touch(f"{unique}-2", customer, 5, "purchase", "store", {"amount": 0.5}),
        touch(f"{unique}-3", customer, 20, "email.opened", "email"),
        touch(f"{unique}-4", customer, 30, "purchase", "web", {"amount": "not a number"}),
    ]
    assert await store.apply_batch(plan(batch)) == 4
    assert await store.apply_batch(plan(batch)) == 0
    assert await store.apply_batch(plan(batch[1:3])) == 0
    profile = await store.profile((customer,))
    assert profile is not None
    assert (profile.event_count, profile.purchase_count, profile.purchase_amount) == (4, 3, Decimal("100.0"))
    assert (profile.first_seen, profile.last_seen) == (
        START + timedelta(minutes=5),
        START + timedelta(minutes=30),
    )
    assert profile.by_channel == {"web": 2, "store": 1, "email": 1}
    assert profile.by_type == {"purchase": 3, "email.opened": 1}


async def test_an_erase_marker_deletes_timeline_and_profile_in_the_batch_it_arrives_in(
    store: TimelineStore, unique: str
) -> None:
    customer, other = f"jo-{unique}", f"kim-{unique}"
    await store.apply_batch(plan([touch(f"{unique}-1", customer, 1), touch(f"{unique}-2", other, 1)]))
    marker = EraseMarker(customer_id=customer, purposes=PROFILING, change_id="x", at=START)
    await store.apply_batch(plan([marker, touch(f"{unique}-3", customer, 2)]))
    assert await all_pages(store, customer, 10) == [f"{unique}-3"]
    profile = await store.profile((customer,))
    assert profile is not None
    assert profile.event_count == 1
    assert await all_pages(store, other, 10) == [f"{unique}-2"]


async def test_pages_are_newest_first_whatever_the_arrival_order_and_filters_combine(
    store: TimelineStore, unique: str
) -> None:
    customer = f"lea-{unique}"
    minutes = list(range(40))
    random.Random(4).shuffle(minutes)
    for chunk in range(0, 40, 10):
        batch = [
            touch(
                f"{unique}-{m:02d}",
                customer,
                m,
                "purchase" if m % 3 == 0 else "page.viewed",
                "store" if m % 2 == 0 else "web",
            )
            for m in minutes[chunk : chunk + 10]
        ]
        await store.apply_batch(plan(batch))
    assert await all_pages(store, customer, 7) == [f"{unique}-{m:02d}" for m in range(39, -1, -1)]
    filtered = await all_pages(
        store,
        customer,
        3,
        types=frozenset({"purchase"}),
        channels=frozenset({"store"}),
        since=START + timedelta(minutes=6),
        until=START + timedelta(minutes=30),
    )
    assert filtered == [f"{unique}-{m:02d}" for m in (24, 18, 12, 6)]


async def test_paging_never_skips_or_repeats_while_events_keep_arriving(
    store: TimelineStore, unique: str
) -> None:
    customer = f"max-{unique}"
    await store.apply_batch(plan([touch(f"{unique}-old-{m}", customer, m * 10) for m in range(30)]))
    initial = {f"{unique}-old-{m}" for m in range(30)}
    seen, after, arrivals = [], None, 0
    while True:
        rows = await store.page(PageQuery((customer,), 4, after, frozenset(), frozenset(), None, None)) or []
        seen += [row.event_id for row in rows]
        if len(rows) < 4:
            break
        after = Cursor(rows[-1].occurred_at, rows[-1].event_id)
        # New arrivals while paging: one newer than everything, one late (older than everything), one
        # with the very timestamp of the cursor.
        arrivals += 1
        await store.apply_batch(
            plan(
                [
                    touch(f"{unique}-new-{arrivals}", customer, 10_000 + arrivals),
                    touch(f"{unique}-late-{arrivals}", customer, -arrivals),
                    AllowedTouch(
                        event=touch(f"{unique}-tie-{arrivals}", customer, 0).event.model_copy(
                            update={"occurred_at": rows[-1].occurred_at}
                        ),
                        purposes=PROFILING,
                    ),
                ]
            )
        )
    assert len(seen) == len(set(seen)), "an event was served twice"
    assert initial <= set(seen), "an event that existed before paging began was skipped"


async def test_a_rebuilt_generation_replaces_the_active_one_atomically(
    store: TimelineStore, unique: str
) -> None:
    customer = f"ned-{unique}"
    await store.apply_batch(plan([touch(f"{unique}-live", customer, 1)]))
    generation = await store.create_generation()
    await store.apply_batch(plan([touch(f"{unique}-rebuilt", customer, 2)]), generation)
    assert await all_pages(store, customer, 10) == [f"{unique}-live"], "reads stay on the active generation"

    async def catch_up() -> None:
        await store.apply_batch(plan([touch(f"{unique}-caught-up", customer, 3)]), generation)

    previous = await store.switch_to(generation, catch_up)
    assert await store.active_generation() == generation
    assert await all_pages(store, customer, 10) == [f"{unique}-caught-up", f"{unique}-rebuilt"]
    await store.drop_generation(previous)


async def test_a_customer_with_nothing_held_is_unknown_not_empty(store: TimelineStore, unique: str) -> None:
    query = PageQuery((f"nobody-{unique}",), 4, None, frozenset(), frozenset(), None, None)
    assert await store.page(query) is None
    await store.apply_batch(plan([touch(f"{unique}-1", f"nobody-{unique}", 1)]))
    filtered = PageQuery((f"nobody-{unique}",), 4, None, frozenset({"no.such.type"}), frozenset(), None, None)
    assert await store.page(filtered) == []  # known, but nothing matches the filter


async def test_traits_are_the_newest_value_of_each_over_the_persons_identify_touches(
    store: TimelineStore, unique: str
) -> None:
    person, absorbed = f"tia-{unique}", f"profile:{unique}"
    newer: dict[str, JsonValue] = {"plan": "gold", "segment": {"call": "identify"}}
    await store.apply_batch(
        plan(
            [
                touch(f"{unique}-1", person, 10, "identify", properties=newer),
                touch(f"{unique}-2", person, 5, "identify", properties={"plan": "silver", "city": "Oslo"}),
                touch(f"{unique}-3", absorbed, 1, "identify", properties={"vip": True}),
                touch(f"{unique}-4", person, 20, "purchase", properties={"plan": "not a trait"}),
            ]
        )
    )
    profile = await store.profile((person, absorbed))
    assert profile is not None
    assert {name: trait.value for name, trait in profile.traits.items()} == {
        "plan": "gold",
        "city": "Oslo",
        "vip": True,
    }
    assert profile.traits["plan"].at == START + timedelta(minutes=10)
    assert profile.event_count == 4
