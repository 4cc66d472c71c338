"""The pipeline's hops with bare clients: what the broker and the database cost before any stage's logic.

The pipeline ratio has a ceiling no stage can lift: every touch crosses the same hops whatever the stages
do with it. Here each hop is the least that hop must do, with raw aiokafka and asyncpg:

- `filter`: customer.log -> customer.allowed, every record passed on as it is (the round's consent
  changes too: the workload's, sent to a real consent API as in the pipeline round), read_committed, in
  one Kafka transaction per poll with its offsets (the consent filter decodes and decides, and keeps one
  transaction per input partition so that a moved partition fences its old owner);
- `timeline` (run twice, as the projectors are): customer.allowed -> a COPY straight into the timeline's
  events table, its key and newest-first index included, other records skipped, offsets committed after
  the database did (the projector also keeps the profile summary and its counts, and is idempotent
  through a staging table);
- `segments`: customer.allowed read and its offsets committed, nothing stored (the evaluator keeps each
  customer's digest and tracking rows).

Every simplification only lowers the cost, so the ratio this bare pipeline reaches is an upper bound of
the real one on the same machine in the same run. `python -m tests.bench.bare HOP` runs one hop, with the
topic prefix and database of TOUCHLINE_TOPIC_PREFIX and TOUCHLINE_PG_DSN.
"""

import asyncio
import sys
from pathlib import Path

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.timeline.domain import TimelineRow, row_from_json
from shared.db import create_pool
from shared.kafka import create_producer, poll_batch, send_partitioned
from shared.settings import TouchlineSettings
from shared.streams import StreamSettings, create_batch_consumer, group_id
from shared.topics import CUSTOMER_ALLOWED, CUSTOMER_LOG, TopicSpec
from tests.bench.timeline import end_offsets, wait_until_committed
from tests.helpers import ServiceProcess

BATCH_MAX = 6000
LINGER_SECONDS = 0.05
# Process name -> hop and its share of the partitions: the timeline's in two halves, as two projectors
# share them. Assigned, not balanced by a group: no rebalance can fall inside a timed round.
HOPS = {
    "bare-filter": "filter",
    "bare-timeline": "timeline-0",
    "bare-timeline-2": "timeline-1",
    "bare-segments": "segments",
}
TIMELINE_SHARES = 2


def group_of(settings: TouchlineSettings, hop: str) -> str:
    return group_id(settings, f"bare-{hop}")


def partitions_of(
    settings: TouchlineSettings, spec: TopicSpec, share: int = 0, shares: int = 1
) -> list[TopicPartition]:
    """The partitions p of `spec` with p % shares == share."""
    return [TopicPartition(settings.topic(spec), p) for p in range(spec.partitions) if p % shares == share]


def consumer_of(
    settings: StreamSettings, hop: str, spec: TopicSpec, share: int = 0, shares: int = 1
) -> AIOKafkaConsumer:
    """A batch processor's consumer of its share of `spec`'s partitions, committing for the hop's group."""
    consumer = create_batch_consumer(settings, f"bare-{hop}")
    consumer.assign(partitions_of(settings, spec, share, shares))
    return consumer


async def caught_up(settings: TouchlineSettings) -> None:
    """Until every hop has committed everything: the filter the whole customer log, then the timeline and
    the segments hops all that the filter wrote."""
    log = await end_offsets(settings, partitions_of(settings, CUSTOMER_LOG))
    await wait_until_committed(settings, group_of(settings, "filter"), log)
    ends = await end_offsets(settings, partitions_of(settings, CUSTOMER_ALLOWED))
    await asyncio.gather(
        wait_until_committed(settings, group_of(settings, "timeline"), ends),
        wait_until_committed(settings, group_of(settings, "segments"), ends),
    )


async def commit_positions(consumer: AIOKafkaConsumer, committed: dict[TopicPartition, int]) -> None:
    """Commits where the consumer is, transaction markers passed included, when that moved."""
    positions = {tp: await consumer.position(tp) for tp in consumer.assignment()}
    moved = {tp: offset for tp, offset in positions.items() if committed.get(tp) != offset}
    if moved:
        await consumer.commit(moved)
        committed.update(moved)


async def run_filter(settings: StreamSettings) -> None:
    consumer = consumer_of(settings, "filter", CUSTOMER_LOG)
    group = group_of(settings, "filter")
    producer = create_producer(settings, transactional_id=group)
    allowed = settings.topic(CUSTOMER_ALLOWED)
    await producer.start()
    await consumer.start()
    while True:
        polled = await poll_batch(consumer, BATCH_MAX, LINGER_SECONDS)
        if not polled:
            continue
        records = [(r.key or b"", r.value or b"") for batch in polled.values() for r in batch]
        async with producer.transaction():
            await send_partitioned(producer, allowed, records)
            offsets = {tp: batch[-1].offset + 1 for tp, batch in polled.items()}
            await producer.send_offsets_to_transaction(offsets, group)


def timeline_row(value: bytes) -> TimelineRow | None:
    """A customer-log touch's events row, read with no validation: the least a projector can do. None for
    the log's other records (the round's consent changes): the hop stores nothing for them."""
    record = orjson.loads(value)
    return row_from_json(record) if record.get("kind") == "touch" else None


async def store(pool: asyncpg.Pool, generation: str, rows: list[TimelineRow]) -> None:
    """COPY, as the cheapest write; a touch ingest accepted twice (a client resending after a 503) fails
    it, and that batch goes row by row, skipping what is stored, as the projector's staging table does."""
    async with pool.acquire() as connection:
        try:
            await connection.copy_records_to_table(
                "events", schema_name=generation, records=rows, columns=TimelineRow._fields
            )
        except asyncpg.UniqueViolationError:
            columns = ", ".join(TimelineRow._fields)
            await connection.executemany(
                f"INSERT INTO {generation}.events ({columns}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " ON CONFLICT DO NOTHING",
                rows,
            )


async def run_timeline(settings: StreamSettings, share: int) -> None:
    consumer = consumer_of(settings, "timeline", CUSTOMER_ALLOWED, share, TIMELINE_SHARES)
    pool = await create_pool(settings.pg_dsn.get_secret_value())
    generation = await pool.fetchval("SELECT generation FROM timeline_active")
    await consumer.start()
    committed: dict[TopicPartition, int] = {}
    while True:
        polled = await poll_batch(consumer, BATCH_MAX, LINGER_SECONDS)
        read = (timeline_row(r.value or b"") for batch in polled.values() for r in batch)
        rows = [row for row in read if row is not None]
        if rows:
            await store(pool, generation, rows)
        await commit_positions(consumer, committed)


async def run_segments(settings: StreamSettings) -> None:
    consumer = consumer_of(settings, "segments", CUSTOMER_ALLOWED)
    await consumer.start()
    committed: dict[TopicPartition, int] = {}
    while True:
        await poll_batch(consumer, BATCH_MAX, LINGER_SECONDS)
        await commit_positions(consumer, committed)


async def run_hop(name: str) -> None:
    hop, _, share = name.partition("-")
    settings = StreamSettings()
    if hop == "timeline":
        await run_timeline(settings, int(share))
    else:
        await {"filter": run_filter, "segments": run_segments}[hop](settings)


def start_hops(env: dict[str, str], logs: Path) -> dict[str, ServiceProcess]:
    """Every hop as a process of its own, as the stages run, with `env`'s topic prefix and database."""
    return {
        name: ServiceProcess("tests.bench.bare", hop, env, logs / f"{name}.log").start()
        for name, hop in HOPS.items()
    }


if __name__ == "__main__":
    asyncio.run(run_hop(sys.argv[1]))
