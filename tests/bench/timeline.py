"""Timeline: projector events/s against a COPY of the same rows, and read latency over millions of rows."""

import asyncio
import os
import random
import time
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.ingest.domain import routed_records
from services.timeline.domain import row_of
from shared.demo import journeys
from shared.events import AllowedTouch, Purpose
from shared.kafka import create_producer, send_partitioned
from shared.serialization import decode_customer_log, encode
from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_ALLOWED
from tests.bench.common import Rate, bench_database, bench_topics, measure, percentile
from tests.bench.ingest import free_port
from tests.helpers import ServiceProcess, worker

EVENTS = 100_000
STORED_FOR_READS = int(os.environ.get("TOUCHLINE_BENCH_TIMELINE_ROWS", "10000000"))
CUSTOMERS_FOR_READS = STORED_FOR_READS // 100  # 100 events each: every page read is a full one
READS = 2000
KEY = "bench-reader"
COLUMNS = ["customer_id", "occurred_at", "event_id", "type", "channel", "properties", "received_at", "source"]


ROUNDS_COPY, ROUNDS_PROJECTOR = 5, 3


def allowed_touches(seed: int = 0) -> list[AllowedTouch]:
    """EVENTS realistic touches as the consent filter forwards them; a new seed gives new event ids."""
    now = datetime.now(UTC)
    events = [
        event.model_copy(update={"event_id": f"r{seed}-{event.event_id}"})
        for event in islice(journeys(EVENTS, now, seed=seed), EVENTS)
    ]
    stamped = [decode_customer_log(value) for _, value in routed_records(events, now, "bench").customer_log]
    return [AllowedTouch(event=event, purposes=frozenset({Purpose.PROFILING})) for event in stamped]


async def copy_ceiling(dsn: str, touches: list[AllowedTouch]) -> Rate:
    """Rows per second of a plain COPY of the same rows into an empty generation, indexes included."""
    rows = [row_of(touch.event) for touch in touches]
    connection = await asyncpg.connect(dsn)

    async def once(round_number: int) -> None:
        await connection.copy_records_to_table(
            "events", schema_name=f"timeline_g{900 + round_number}", records=rows, columns=COLUMNS
        )

    try:
        for round_number in range(ROUNDS_COPY):
            await connection.execute(f"SELECT timeline_create_generation('timeline_g{900 + round_number}')")
        return await measure("PostgreSQL COPY of the same rows (ceiling)", ROUNDS_COPY, len(rows), once)
    finally:
        for round_number in range(ROUNDS_COPY):
            await connection.execute(f"DROP SCHEMA IF EXISTS timeline_g{900 + round_number} CASCADE")
        await connection.close()


async def stored_rows(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        generation = await connection.fetchval("SELECT generation FROM timeline_active")
        count: int = await connection.fetchval(f"SELECT count(*) FROM {generation}.events")
        return count
    finally:
        await connection.close()


async def wait_until_committed(
    settings: TouchlineSettings, group: str, ends: dict[TopicPartition, int]
) -> None:
    """Until the projector's group has committed every offset: it commits only after the database did.
    Asking Kafka, not counting rows, keeps the wait off the database being measured."""
    watcher = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await watcher.start()
    try:
        while [tp for tp, end in ends.items() if (await watcher.committed(tp) or 0) < end]:
            await asyncio.sleep(0.05)
    finally:
        await watcher.stop()


async def projector_rate(settings: TouchlineSettings, dsn: str, logs: Path, workers: int = 1) -> Rate:
    """Events per second the projector(s) commit while catching up on a backlog of one round."""
    env = {
        "TOUCHLINE_TOPIC_PREFIX": settings.topic_prefix,
        "TOUCHLINE_PG_DSN": dsn,
        "TOUCHLINE_LOG_LEVEL": "WARNING",
    }
    projectors = [
        worker("services.timeline", f"bench-timeline-projector-{n}", env, logs).start()
        for n in range(workers)
    ]
    topic, group = settings.topic(CUSTOMER_ALLOWED), f"{settings.topic_prefix}touchline-timeline"
    partitions = [TopicPartition(topic, number) for number in range(CUSTOMER_ALLOWED.partitions)]
    rounds = {
        number: [
            (touch.event.customer_id.encode(), encode(touch)) for touch in allowed_touches(seed=number + 1)
        ]
        for number in range(ROUNDS_PROJECTOR)
    }
    producer = create_producer(settings)

    async def backlog_round(round_number: int) -> float:
        """Rate of catching up on a round's backlog, written while the projectors were frozen: producing
        costs CPU on the same two cores, so it happens outside the timed part."""
        for projector in projectors:
            projector.pause()
        await asyncio.gather(*await send_partitioned(producer, topic, rounds[round_number]))
        ends = await end_offsets(settings, partitions)
        started = time.perf_counter()
        for projector in projectors:
            projector.resume()
        await wait_until_committed(settings, group, ends)
        return EVENTS / (time.perf_counter() - started)

    try:
        await producer.start()
        warm_up = [
            (touch.event.customer_id.encode(), encode(touch)) for touch in allowed_touches(seed=99)[:100]
        ]
        await asyncio.gather(*await send_partitioned(producer, topic, warm_up))
        await wait_until_committed(settings, group, await end_offsets(settings, partitions))
        name = f"projector ({workers} process{'es' if workers > 1 else ''}), backlog -> committed rows"
        rate = Rate(name, [await backlog_round(round_number) for round_number in range(ROUNDS_PROJECTOR)])
        assert await stored_rows(dsn) == len(warm_up) + ROUNDS_PROJECTOR * EVENTS
        return rate
    finally:
        await producer.stop()
        for projector in projectors:
            projector.stop()


async def end_offsets(
    settings: TouchlineSettings, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


FILL = """
INSERT INTO {g}.events (customer_id, occurred_at, event_id, type, channel, properties, received_at, source)
SELECT 'cust-' || (n % $2), now() - make_interval(mins => (n / $2)::int), 'bench-' || n,
       (ARRAY['page.viewed', 'email.opened', 'purchase', 'support.call'])[1 + n % 4],
       (ARRAY['web', 'email', 'store', 'call_center', 'mobile'])[1 + n % 5],
       jsonb_build_object('path', '/shoes', 'amount', n % 200), now(), 'bench'
FROM generate_series($1::bigint, $1::bigint + 999999) AS n
"""


async def fill(dsn: str, rows: int) -> float:
    """Seconds to store `rows` timeline rows over CUSTOMERS_FOR_READS customers, a million at a time."""
    connection = await asyncpg.connect(dsn)
    try:
        generation = await connection.fetchval("SELECT generation FROM timeline_active")
        started = time.perf_counter()
        for first in range(0, rows, 1_000_000):
            await connection.execute(FILL.format(g=generation), first, CUSTOMERS_FOR_READS)
        await connection.execute(f"ANALYZE {generation}.events")
        return time.perf_counter() - started
    finally:
        await connection.close()


async def read_latencies(dsn: str, logs: Path) -> list[float]:
    port = free_port()
    env = {
        "TOUCHLINE_PG_DSN": dsn,
        "TOUCHLINE_TIMELINE_PORT": str(port),
        "TOUCHLINE_LOG_LEVEL": "WARNING",
        "TOUCHLINE_API_KEYS": orjson.dumps({KEY: ["timeline:read"]}).decode(),
    }
    api = ServiceProcess("services.timeline", "api", env, logs / "bench-timeline-api.log").start()
    try:
        await api.wait_ready(f"http://127.0.0.1:{port}/readyz")
        rng = random.Random(1)
        latencies = []
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {KEY}"}
        ) as client:
            for number in range(READS + 200):
                customer = f"cust-{rng.randrange(CUSTOMERS_FOR_READS)}"
                started = time.perf_counter()
                response = await client.get(f"/v1/customers/{customer}/timeline", params={"limit": 50})
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, response.text
                assert len(response.json()["events"]) == 50
                if number >= 200:  # the first requests warm connections and caches
                    latencies.append(elapsed)
        return latencies
    finally:
        api.stop()


async def run(logs: Path) -> list[str]:
    async with bench_topics() as settings, bench_database() as dsn:
        ceiling = await copy_ceiling(dsn, allowed_touches())
        projector = await projector_rate(settings, dsn, logs)
    # Scaling out: the 12 partitions shared by two projector processes, each a fresh database and topics.
    async with bench_topics() as settings, bench_database() as dsn:
        two = await projector_rate(settings, dsn, logs, workers=2)
    async with bench_database() as dsn:
        fill_seconds = await fill(dsn, STORED_FOR_READS)
        latencies = await read_latencies(dsn, logs)
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    return [
        f"timeline projector: {EVENTS:,} demo events a round, 16 hash partitions, 2 indexes,"
        " synchronous_commit=on",
        ceiling.line("rows/s"),
        projector.line(),
        f"  ratio projector / COPY (medians): {projector.median / ceiling.median:.2f}  (target >= 0.25)",
        two.line(),
        f"  ratio two projectors / COPY (medians): {two.median / ceiling.median:.2f}",
        f"timeline reads: GET .../timeline?limit=50 through the API, {READS} random customers,",
        f"  {STORED_FOR_READS:,} rows, {CUSTOMERS_FOR_READS:,} customers (filled in {fill_seconds:.0f} s)",
        f"  p50 {p50:.1f} ms, p99 {p99:.1f} ms  (target p99 < 20 ms)",
    ]
