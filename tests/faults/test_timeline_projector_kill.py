"""SIGKILL the timeline projector mid-stream, restart it: it stores exactly the allowed events."""

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from shared.events import AllowedTouch, EraseMarker, Purpose, TouchEvent
from shared.serialization import encode
from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_ALLOWED
from tests.consent_model import ProjectionModel
from tests.helpers import eventually, produce, worker

RECORDS = 8000
CHUNK = 100
KILLS = 3
START = datetime(2026, 9, 1, tzinfo=UTC)


def allowed_stream(customers: list[str], seed: int) -> list[AllowedTouch | EraseMarker]:
    """Touches, some repeated as a replaying filter would, and a few erase markers."""
    rng = random.Random(seed)
    stream: list[AllowedTouch | EraseMarker] = []
    for number in range(RECORDS):
        customer = rng.choice(customers)
        if rng.random() < 0.01:
            stream.append(
                EraseMarker(
                    customer_id=customer,
                    purposes=frozenset({Purpose.PROFILING}),
                    change_id=f"x{number}",
                    at=START,
                )
            )
            continue
        event_number = number if rng.random() < 0.9 else rng.randrange(number + 1)
        event = TouchEvent(
            event_id=f"{customer}-{event_number}",
            customer_id=customer,
            type="purchase",
            channel="web",
            occurred_at=START + timedelta(minutes=event_number),
            received_at=START,
            source="t",
            properties={"amount": 1},
        )
        stream.append(AllowedTouch(event=event, purposes=frozenset({Purpose.PROFILING})))
    return stream


Stored = tuple[dict[str, set[str]], dict[str, int]]


async def stored(database: str, customers: list[str]) -> Stored:
    connection = await asyncpg.connect(database)
    try:
        generation = await connection.fetchval("SELECT generation FROM timeline_active")
        rows = await connection.fetch(
            f"SELECT customer_id, event_id FROM {generation}.events WHERE customer_id = ANY($1)", customers
        )
        counts = await connection.fetch(
            f"SELECT customer_id, event_count FROM {generation}.profiles WHERE customer_id = ANY($1)",
            customers,
        )
    finally:
        await connection.close()
    held: dict[str, set[str]] = {}
    for row in rows:
        held.setdefault(row["customer_id"], set()).add(row["event_id"])
    return held, {row["customer_id"]: row["event_count"] for row in counts}


async def test_the_projector_survives_sigkills_with_nothing_lost_or_doubled(
    kafka: TouchlineSettings, database: str, test_env: dict[str, str], logs: Path, unique: str
) -> None:
    customers = [f"{unique}-t{number}" for number in range(30)]
    stream = allowed_stream(customers, seed=8)
    projector = worker("services.timeline", "timeline-projector-killed", test_env, logs).start()

    async def feed() -> None:
        for start in range(0, RECORDS, CHUNK):
            records = [(record_key(record), encode(record)) for record in stream[start : start + CHUNK]]
            await produce(kafka.kafka_bootstrap, kafka.topic(CUSTOMER_ALLOWED), records)  # type: ignore[arg-type]
            await asyncio.sleep(0.5)

    feeding = asyncio.create_task(feed())
    try:
        for _ in range(KILLS):
            # Kill only once the projector has visibly stored something since it (re)started, while the
            # feed is still running: provably mid-stream.
            before = await stored(database, customers)

            def progressed(answer: Stored, before: Stored = before) -> bool:
                return answer != before

            await eventually(lambda: stored(database, customers), progressed)
            await asyncio.sleep(0.5)
            assert not feeding.done(), "the feed ended before the kill: not mid-stream"
            projector.kill()
            projector.start()
        await feeding
        expected = ProjectionModel("timeline").apply_all(stream).holdings()
        held, counted = await eventually(
            lambda: stored(database, customers), lambda answer: answer[0] == expected, timeout=180
        )
        assert counted == {customer: len(events) for customer, events in held.items()}, (
            "a profile counted a row twice"
        )
    finally:
        feeding.cancel()
        projector.stop()


def record_key(record: AllowedTouch | EraseMarker) -> bytes:
    return (record.event.customer_id if isinstance(record, AllowedTouch) else record.customer_id).encode()
