"""Consent filter: catching up a backlog against a raw aiokafka consume + produce of the same records,
and start-up time with 1,000,000 customers holding explicit consent."""

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events import ConsentChange, ConsentStatus, CustomerLogRecord, Purpose, TouchEvent
from shared.kafka import create_producer, send_partitioned
from shared.serialization import encode
from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_ALLOWED, CUSTOMER_LOG, TOUCH_INBOUND, TopicSpec
from tests.bench.common import Rate, bench_database, bench_topics, measure
from tests.bench.timeline import end_offsets, wait_until_committed
from tests.helpers import consume_until, worker

RECORDS = 100_000
CUSTOMERS = 10_000
ROUNDS = 3
STATE_CUSTOMERS = 1_000_000


def customer_log(round_number: int) -> list[tuple[bytes, bytes]]:
    """Touches of CUSTOMERS customers, one record in fifty a consent change, as the log carries them."""
    rng = random.Random(round_number)
    now = datetime.now(UTC)
    records = []
    for number in range(RECORDS):
        customer = f"c-{rng.randrange(CUSTOMERS):05d}"
        record: CustomerLogRecord
        if number % 50 == 0:
            record = ConsentChange(
                change_id=f"r{round_number}-c{number}",
                customer_id=customer,
                purpose=rng.choice(list(Purpose)),
                status=rng.choice(list(ConsentStatus)),
                changed_at=now,
                source="bench",
            )
        else:
            record = TouchEvent(
                event_id=f"r{round_number}-e{number}",
                customer_id=customer,
                type="page.viewed",
                channel="web",
                occurred_at=now - timedelta(minutes=number % 1000),
                received_at=now,
                source="bench",
                properties={"path": "/shoes"},
            )
        records.append((customer.encode(), encode(record)))
    return records


async def raw_ceiling(settings: TouchlineSettings, source: TopicSpec, count: int, rounds: int) -> Rate:
    """Records/s of a bare consumer reading the first `count` records of `source` (a benchmark's stage
    has filled it) and producing each value on (acks=all, batched): what that stage could reach at best."""
    producer = create_producer(settings)
    await producer.start()
    topic, scratch = settings.topic(source), settings.topic(TOUCH_INBOUND)
    partitions = [TopicPartition(topic, p) for p in range(source.partitions)]

    async def once(_: int) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest")
        consumer.assign(partitions)
        await consumer.start()
        try:
            await consumer.seek_to_beginning(*partitions)
            seen = 0
            while seen < count:
                polled = await consumer.getmany(timeout_ms=500, max_records=2000)
                records = [(r.key, r.value) for batch in polled.values() for r in batch]
                await asyncio.gather(*await send_partitioned(producer, scratch, records))
                seen += len(records)
        finally:
            await consumer.stop()

    try:
        return await measure(
            "raw aiokafka consume + produce of the same records (ceiling)", rounds, count, once
        )
    finally:
        await producer.stop()


async def filter_rate(settings: TouchlineSettings, dsn: str, logs: Path) -> Rate:
    env = {
        "TOUCHLINE_TOPIC_PREFIX": settings.topic_prefix,
        "TOUCHLINE_PG_DSN": dsn,
        "TOUCHLINE_LOG_LEVEL": "WARNING",
    }
    consent_filter = worker("services.consent", "bench-consent-filter", env, logs).start()
    topic, group = settings.topic(CUSTOMER_LOG), f"{settings.topic_prefix}touchline-consent"
    partitions = [TopicPartition(topic, p) for p in range(CUSTOMER_LOG.partitions)]
    producer = create_producer(settings)
    await producer.start()
    rates = []
    try:
        await asyncio.gather(*await send_partitioned(producer, topic, customer_log(99)[:100]))
        await wait_until_committed(settings, group, await end_offsets(settings, partitions))
        for round_number in range(ROUNDS):
            # Produced while the filter is frozen, so the producer's CPU is not measured with it.
            consent_filter.pause()
            await asyncio.gather(*await send_partitioned(producer, topic, customer_log(round_number)))
            ends = await end_offsets(settings, partitions)
            started = time.perf_counter()
            consent_filter.resume()
            await wait_until_committed(settings, group, ends)
            rates.append(RECORDS / (time.perf_counter() - started))
    finally:
        await producer.stop()
        consent_filter.stop()
    return Rate("consent filter, backlog -> outputs and offsets committed", rates)


async def start_up_seconds(settings: TouchlineSettings, dsn: str, logs: Path) -> float:
    """From `python -m services.consent worker` to its first decision, with STATE_CUSTOMERS customers'
    explicit consent stored: the state is read on demand, so no replay stands in between."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "INSERT INTO consent_history (change_id, customer_id, purpose, status, changed_at, source,"
            " log_partition, log_offset) SELECT 'state-' || n, 's-' || n, 'marketing', 'granted', now(),"
            " 'bench', 0, n FROM generate_series(1, $1) AS n",
            STATE_CUSTOMERS,
        )
    finally:
        await connection.close()
    probe = TouchEvent(
        event_id="start-up-probe",
        customer_id=f"s-{STATE_CUSTOMERS // 2}",
        type="page.viewed",
        channel="web",
        occurred_at=datetime.now(UTC),
        received_at=datetime.now(UTC),
        source="bench",
    )
    producer = create_producer(settings)
    await producer.start()
    try:
        await (
            await producer.send(settings.topic(CUSTOMER_LOG), encode(probe), key=probe.customer_id.encode())
        )
    finally:
        await producer.stop()
    env = {
        "TOUCHLINE_TOPIC_PREFIX": settings.topic_prefix,
        "TOUCHLINE_PG_DSN": dsn,
        "TOUCHLINE_LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    consent_filter = worker("services.consent", "bench-consent-start-up", env, logs).start()
    try:
        await consume_until(
            settings.kafka_bootstrap,
            settings.topic(CUSTOMER_ALLOWED),
            lambda kept: bool(kept),
            keep=lambda record: record.key == probe.customer_id.encode(),
            timeout=120,
        )
        return time.perf_counter() - started
    finally:
        consent_filter.stop()


async def run(logs: Path) -> list[str]:
    async with bench_topics() as settings, bench_database() as dsn:
        rate = await filter_rate(settings, dsn, logs)
        ceiling = await raw_ceiling(settings, CUSTOMER_LOG, RECORDS, ROUNDS)
    async with bench_topics() as settings, bench_database() as dsn:
        start_up = await start_up_seconds(settings, dsn, logs)
    return [
        f"consent filter: {RECORDS:,} customer-log records a round, {CUSTOMERS:,} customers,"
        " 2% consent changes",
        ceiling.line("records/s"),
        rate.line("records/s"),
        f"  ratio filter / raw consume+produce (medians): {rate.median / ceiling.median:.2f}"
        "  (target >= 0.50)",
        f"  start-up to first decision with {STATE_CUSTOMERS:,} customers' consent stored: {start_up:.1f} s",
    ]
