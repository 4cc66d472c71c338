"""`python -m services.timeline rebuild`: the allowed stream replayed into a new generation, then active.

On topics of its own: the rebuild reads to the end that read_committed readers see, and on the session's
topics a worker another test kills mid-transaction can hold that end below this test's records.
"""

from datetime import UTC, datetime, timedelta

import asyncpg

from services.timeline.rebuild import rebuild
from services.timeline.settings import TimelineSettings
from shared.events import AbsorbedMarker, AllowedTouch, EraseMarker, Purpose, TouchEvent
from shared.serialization import encode
from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_ALLOWED
from tests.consent_model import ProjectionModel
from tests.helpers import produce

AT = datetime(2026, 8, 1, tzinfo=UTC)
PROFILING = frozenset({Purpose.PROFILING})


def touch(event_id: str, customer: str, minutes: int) -> AllowedTouch:
    event = TouchEvent(
        event_id=event_id,
        customer_id=customer,
        type="purchase",
        channel="store",
        occurred_at=AT + timedelta(minutes=minutes),
        received_at=AT,
        source="t",
    )
    return AllowedTouch(event=event, purposes=PROFILING)


async def test_rebuild_replays_the_allowed_stream_into_a_new_active_generation(
    own_topics: TouchlineSettings, database: str, unique: str
) -> None:
    kept, erased = f"una-{unique}", f"val-{unique}"
    stream: list[AllowedTouch | EraseMarker] = [
        touch(f"{unique}-1", kept, 1),
        touch(f"{unique}-2", erased, 2),
        touch(f"{unique}-1", kept, 1),
        EraseMarker(customer_id=erased, purposes=PROFILING, change_id="x", at=AT),
        touch(f"{unique}-3", kept, 3),
    ]
    records: list[tuple[bytes | None, bytes | None]] = [
        ((r.event.customer_id if isinstance(r, AllowedTouch) else r.customer_id).encode(), encode(r))
        for r in stream
    ]
    # What the live projector parked, and a merge notice (the timeline joins merges when read): skipped.
    notice = AbsorbedMarker(change_id="m:0", customer_id=kept, absorbed=erased, at=AT, purposes=PROFILING)
    unstorable = encode(touch(f"{unique}-nul", kept, 4)).replace(b'"source":"t"', b'"source":"t\\u0000"')
    records[2:2] = [
        (kept.encode(), b'{"kind": "allowed", "event": 42}'),
        (kept.encode(), encode(notice)),
        (kept.encode(), unstorable),
    ]
    await produce(own_topics.kafka_bootstrap, own_topics.topic(CUSTOMER_ALLOWED), records)
    connection = await asyncpg.connect(database)
    try:
        before = await connection.fetchval("SELECT generation FROM timeline_active")
        summary = await rebuild(TimelineSettings(topic_prefix=own_topics.topic_prefix))
        after = await connection.fetchval("SELECT generation FROM timeline_active")
        rows = await connection.fetch(
            f"SELECT customer_id, event_id FROM {after}.events WHERE customer_id = ANY($1)", [kept, erased]
        )
        old_still_there = await connection.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", before
        )
    finally:
        await connection.close()
    assert after != before
    assert after in summary
    assert "unreadable or unstorable skipped" in summary
    assert old_still_there == 0
    held: dict[str, set[str]] = {}
    for row in rows:
        held.setdefault(row["customer_id"], set()).add(row["event_id"])
    assert held == ProjectionModel("timeline").apply_all(stream).holdings()
