"""The segment evaluator as deployed (`python -m services.segments worker`) with the real broker and database.

Each test uses event types of its own, so segments of other tests never match its customers.
"""

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.segments.api import create_app
from services.segments.settings import SegmentsSettings
from services.timeline.api import create_app as timeline_app
from services.timeline.settings import TimelineSettings
from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_ALLOWED, TOUCH_DLQ
from tests.helpers import ROOT, ServiceProcess, asgi_client, consume_until, eventually
from tests.segments_support import allowed_touch, changes_until, feed, revocation

ADMIN = {"Authorization": "Bearer test-marketer"}
READER = {"Authorization": "Bearer test-reader"}


@pytest.fixture
async def segments(segment_evaluator: ServiceProcess, database: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SegmentsSettings())
    async with asgi_client(app) as client:
        yield client


async def define(client: httpx.AsyncClient, segment: str, rule: dict[str, Any]) -> None:
    response = await client.post(
        "/v1/segments", json={"id": segment, "name": segment, "rule": rule}, headers=ADMIN
    )
    assert response.status_code == 201, response.text


async def members(client: httpx.AsyncClient, segment: str) -> list[str]:
    response = await client.get(f"/v1/segments/{segment}/members", headers=READER)
    return [member["customer_id"] for member in response.json()["members"]]


async def test_a_touch_enters_and_the_window_sliding_past_exits_with_no_new_event(
    segments: httpx.AsyncClient, kafka: TouchlineSettings, unique: str
) -> None:
    kind, customer, segment = f"buy.u{unique}", f"ann-{unique}", f"recent-{unique}"
    await define(segments, segment, {"count": {"type": kind, "within": "4s"}, "gte": 1})
    occurred = datetime.now(UTC)
    await feed(kafka, [allowed_touch(customer, "e1", kind, occurred)])

    entered, exited = await changes_until(kafka, {customer}, 2)
    assert (entered.transition, entered.reason, entered.segment_id) == ("entered", "event", segment)
    assert (exited.transition, exited.reason) == ("exited", "window_expired")
    assert exited.at == occurred + timedelta(seconds=4)  # the exact moment the rule stopped holding
    assert exited.change_id != entered.change_id
    assert await members(segments, segment) == []
    stats = (await segments.get(f"/v1/segments/{segment}/stats", headers=READER)).json()
    assert (stats["members"], stats["entered_last_hour"], stats["exited_last_hour"]) == (0, 1, 1)
    lines = await tail_lines(segment, 2)
    assert [line.split()[1:4] for line in lines] == [["entered", customer, "v1"], ["exited", customer, "v1"]]

    # The change feed: newest first, a page at a time, once the outbox has them published.
    feed_url = f"/v1/segments/{segment}/changes"
    newest = await eventually(
        lambda: segments.get(feed_url, params={"limit": 1}, headers=READER),
        lambda response: len(response.json()["changes"]) == 1 and response.json()["next_cursor"] is not None,
    )
    older = await segments.get(
        feed_url, params={"limit": 1, "cursor": newest.json()["next_cursor"]}, headers=READER
    )
    pages = [newest.json(), older.json()]
    assert [(c["transition"], c["reason"]) for page in pages for c in page["changes"]] == [
        ("exited", "window_expired"),
        ("entered", "event"),
    ]
    assert pages[1]["next_cursor"] is None
    refused = await segments.get(feed_url, params={"cursor": "not-ours"}, headers=READER)
    assert (refused.status_code, refused.json()["problems"][0]["field"]) == (422, "cursor")
    assert (await segments.get(f"/v1/segments/none-{unique}/changes", headers=READER)).status_code == 404


async def tail_lines(segment: str, count: int) -> list[str]:
    """What `python -m services.segments tail SEGMENT --from-beginning` prints, up to `count` lines."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.segments",
        "tail",
        segment,
        "--from-beginning",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(60):
            return [(await process.stdout.readline()).decode() for _ in range(count)]
    finally:
        process.kill()
        await process.wait()


async def test_a_new_or_changed_segment_is_evaluated_for_known_customers_at_once(
    segments: httpx.AsyncClient, kafka: TouchlineSettings, unique: str
) -> None:
    kind, once, twice = f"buy.u{unique}", f"once-{unique}", f"twice-{unique}"
    now = datetime.now(UTC)
    watcher = f"any-{unique}"
    await define(segments, watcher, {"count": {"type": kind, "within": "1d"}, "gte": 1})
    await feed(
        kafka,
        [
            allowed_touch(once, "a", kind, now),
            allowed_touch(twice, "b", kind, now),
            allowed_touch(twice, "c", kind, now),
        ],
    )
    await changes_until(kafka, {once, twice}, 2)  # both entered the watcher: both are known now

    segment = f"repeat-{unique}"

    async def changes_of_segment(count: int) -> set[tuple[str, str, str, int]]:
        """The segment's changes once the two customers have `count` in all (partitions interleave
        freely, so only each customer's own order is fixed)."""
        changes = await changes_until(kafka, {once, twice}, count)
        return {
            (c.customer_id, c.transition.value, c.reason.value, c.segment_version)
            for c in changes
            if c.segment_id == segment
        }

    await define(segments, segment, {"count": {"type": kind, "within": "1d"}, "gte": 2})
    assert await changes_of_segment(3) == {(twice, "entered", "definition_changed", 1)}

    loosened = {"name": "any buyer", "rule": {"count": {"type": kind, "within": "1d"}, "gte": 1}}
    assert (await segments.put(f"/v1/segments/{segment}", json=loosened, headers=ADMIN)).status_code == 200
    assert await changes_of_segment(4) == {
        (twice, "entered", "definition_changed", 1),
        (once, "entered", "definition_changed", 2),  # twice was a member under both: no new event
    }
    assert sorted(await members(segments, segment)) == sorted([once, twice])

    assert (await segments.delete(f"/v1/segments/{segment}", headers=ADMIN)).status_code == 202
    exits = {change for change in await changes_of_segment(6) if change[1] == "exited"}
    assert exits == {(once, "exited", "segment_deleted", 3), (twice, "exited", "segment_deleted", 3)}
    customer_view = (await segments.get(f"/v1/customers/{twice}/segments", headers=READER)).json()
    assert [s["segment_id"] for s in customer_view["segments"]] == [watcher]


async def test_the_timeline_profile_shows_the_segments_a_customer_is_in(
    segments: httpx.AsyncClient, timeline_projector: ServiceProcess, kafka: TouchlineSettings, unique: str
) -> None:
    kind, customer, segment = f"buy.u{unique}", f"pro-{unique}", f"buyers-{unique}"
    await define(segments, segment, {"count": {"type": kind, "within": "1d"}, "gte": 1})
    await feed(kafka, [allowed_touch(customer, "p1", kind, datetime.now(UTC))])
    await changes_until(kafka, {customer}, 1)
    app = timeline_app(TimelineSettings())
    async with asgi_client(app) as timeline:
        profile = await eventually(
            lambda: timeline.get(f"/v1/customers/{customer}/profile", headers=READER),
            lambda response: response.status_code == 200,
        )
    assert [(s["segment_id"], s["name"]) for s in profile.json()["segments"]] == [(segment, segment)]


async def test_a_revocation_exits_every_segment_and_forgets_the_customer(
    segments: httpx.AsyncClient, kafka: TouchlineSettings, unique: str
) -> None:
    kind, customer = f"visit.u{unique}", f"rex-{unique}"
    first, second = f"first-{unique}", f"second-{unique}"
    await define(segments, first, {"count": {"type": kind, "within": "1d"}, "gte": 1})
    await define(segments, second, {"last": {"type": kind}, "within": "1h"})
    now = datetime.now(UTC)
    await feed(kafka, [allowed_touch(customer, "v1", kind, now), revocation(customer, f"revoke-{unique}")])
    changes = await changes_until(kafka, {customer}, 4)
    assert [(c.transition, c.reason) for c in changes[2:]] == [("exited", "consent_revoked")] * 2
    assert {c.segment_id for c in changes[2:]} == {first, second}
    # Forgotten: the same touch again counts from nothing, as for a new customer.
    await feed(kafka, [allowed_touch(customer, "v2", kind, now)])
    assert len(await changes_until(kafka, {customer}, 6)) == 6


async def test_touches_not_allowed_for_marketing_never_reach_a_segment(
    segments: httpx.AsyncClient, kafka: TouchlineSettings, unique: str
) -> None:
    kind, private, open_ = f"visit.u{unique}", f"private-{unique}", f"open-{unique}"
    await define(segments, f"seen-{unique}", {"count": {"type": kind, "within": "1d"}, "gte": 1})
    profiling_only = frozenset({"profiling"})
    now = datetime.now(UTC)
    await feed(
        kafka,
        [allowed_touch(private, "p", kind, now, profiling_only), allowed_touch(open_, "o", kind, now)],  # type: ignore[arg-type]
    )
    changes = await changes_until(kafka, {private, open_}, 1)
    assert [c.customer_id for c in changes] == [open_]
    view = (await segments.get(f"/v1/customers/{private}/segments", headers=READER)).json()
    assert view["segments"] == []


async def test_an_unreadable_record_is_parked_and_the_valid_ones_beside_it_still_count(
    segments: httpx.AsyncClient, timeline_projector: ServiceProcess, kafka: TouchlineSettings, unique: str
) -> None:
    """Both readers of the allowed stream, the evaluator and the timeline projector, park it and go on."""
    kind, customer = f"visit.u{unique}", f"bad-{unique}"
    await define(segments, f"seen-{unique}", {"count": {"type": kind, "within": "1d"}, "gte": 1})
    garbage = (customer.encode(), b'{"kind": "allowed", "event": 42}')
    await feed(kafka, [garbage, allowed_touch(customer, "ok", kind, datetime.now(UTC))])
    assert len(await changes_until(kafka, {customer}, 1)) == 1
    parked = await consume_until(
        kafka.kafka_bootstrap,
        kafka.topic(TOUCH_DLQ),
        lambda kept: len(kept) >= 2,
        keep=lambda record: record.value == garbage[1],
    )
    for record in parked:
        headers = dict(record.headers)
        assert headers["origin"].decode().startswith(kafka.topic(CUSTOMER_ALLOWED))
        assert b"event" in headers["error"]
    await eventually(lambda: members(segments, f"seen-{unique}"), lambda found: customer in found)
    app = timeline_app(TimelineSettings())
    async with asgi_client(app) as timeline:
        await eventually(
            lambda: timeline.get(f"/v1/customers/{customer}/timeline", headers=READER),
            lambda response: response.status_code == 200,
        )


async def test_a_touch_postgresql_cannot_store_is_parked_alone_and_both_readers_go_on(
    segments: httpx.AsyncClient, timeline_projector: ServiceProcess, kafka: TouchlineSettings, unique: str
) -> None:
    """Ingest refuses NUL; should one reach the allowed stream anyway, only that touch is parked.

    It once stopped the timeline: `properties::jsonb` refused the whole batch, the projector died, and
    the second projector replayed the same batch and died the same way.
    """
    kind, customer = f"note.u{unique}", f"nul-{unique}"
    await define(segments, f"noted-{unique}", {"count": {"type": kind, "within": "1d"}, "gte": 3})
    now = datetime.now(UTC)
    key, poisoned = allowed_touch(customer, "poison", kind, now, note="PLACEHOLDER")
    poison = (key, poisoned.replace(b'"PLACEHOLDER"', b'"a\\u0000b"'))
    touches = [allowed_touch(customer, f"ok-{number}", kind, now) for number in range(3)]
    await feed(kafka, [touches[0], poison, *touches[1:]])
    parked = await consume_until(
        kafka.kafka_bootstrap,
        kafka.topic(TOUCH_DLQ),
        lambda kept: len(kept) >= 1,
        keep=lambda record: record.value == poison[1],
    )
    headers = dict(parked[0].headers)
    assert headers["stage"] == b"timeline-projector"
    assert b"UntranslatableCharacter" in headers["error"] or b"\\u0000" in headers["error"]
    assert headers["origin"].decode().startswith(kafka.topic(CUSTOMER_ALLOWED))
    app = timeline_app(TimelineSettings())
    async with asgi_client(app) as timeline:
        response = await eventually(
            lambda: timeline.get(f"/v1/customers/{customer}/timeline", headers=READER),
            lambda response: response.status_code == 200 and len(response.json()["events"]) == 3,
        )
        assert {event["event_id"] for event in response.json()["events"]} == {"ok-0", "ok-1", "ok-2"}
    # The evaluator stores what rules reference, not the text: it counts the poisoned touch too.
    await eventually(lambda: members(segments, f"noted-{unique}"), lambda found: customer in found)
    assert timeline_projector.process is not None
    assert timeline_projector.process.poll() is None
