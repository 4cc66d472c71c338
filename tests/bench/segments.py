"""Segments: evaluator events/s with 20 live segments over 100,000 customers, against a raw consume of the
same records, and the latency from a touch's received_at to its change on segment.membership."""

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.segments.api import create_app
from services.segments.settings import SegmentsSettings
from shared.events import SegmentMembershipChange
from shared.kafka import create_producer, send_partitioned
from shared.serialization import decode, decode_allowed
from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_ALLOWED, SEGMENT_MEMBERSHIP
from tests.bench.common import Rate, bench_database, bench_topics, measure, percentile
from tests.bench.timeline import end_offsets
from tests.helpers import asgi_client, worker
from tests.segments_support import allowed_touch, evaluated_position

CUSTOMERS = 100_000
ROUNDS = 3  # each round: one touch for every customer, as a backlog
PROBES, PROBES_PER_SECOND = 3000, 300
KEY = "bench-marketer"
KINDS = [
    ("purchase", "web"),
    ("purchase", "store"),
    ("email.opened", "email"),
    ("page.viewed", "web"),
    ("support.call", "call_center"),
    ("app.opened", "mobile"),
]


def twenty_segments() -> list[dict[str, Any]]:
    """Twenty rules of the shapes marketing writes, over the touch types the rounds send."""
    segments: list[dict[str, Any]] = [
        {"count": {"type": "purchase", "within": window}, "gte": n}
        for window in ("1d", "7d", "30d")
        for n in (1, 2)
    ]
    segments += [
        {"sum": {"type": "purchase", "property": "amount", "within": w}, "gte": s}
        for w, s in (("7d", 100), ("30d", 250), ("90d", 500))
    ]
    segments += [
        {"max": {"type": "purchase", "property": "amount", "within": "30d"}, "gte": 150},
        {"count": {"type": "purchase", "channel": "store", "within": "30d"}, "gte": 1},
        {"count": {"type": "email.opened", "within": "14d"}, "gte": 2},
        {"last": {"type": "page.viewed"}, "within": "1h"},
        {"last": {"type": "app.opened"}, "not_within": "45s"},
        {"not": {"count": {"type": "support.call", "within": "7d"}, "gte": 1}},
        {
            "all": [
                {"count": {"type": "purchase", "within": "30d"}, "gte": 2},
                {"not": {"count": {"type": "support.call", "within": "7d"}, "gte": 1}},
            ]
        },
        {
            "any": [
                {"count": {"type": "email.opened", "within": "1d"}, "gte": 1},
                {"count": {"type": "app.opened", "within": "1d"}, "gte": 1},
            ]
        },
        {"count": {"type": "page.viewed", "properties": {"path": "/sale"}, "within": "12h"}, "gte": 1},
        {"min": {"type": "purchase", "property": "amount", "within": "90d"}, "lte": 20},
    ]
    segments.append({"count": {"type": "probe", "within": "1d"}, "gte": 1})  # for latency, see probes()
    assert len(segments) == 20
    return segments


def backlog(round_number: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(round_number)
    now = datetime.now(UTC)
    records = []
    for number in range(CUSTOMERS):
        customer = f"b-{number:06d}"
        kind, channel = rng.choice(KINDS)
        at = now - timedelta(minutes=rng.randrange(60 * 24 * 30))
        records.append(
            allowed_touch(
                customer,
                f"r{round_number}-{number}",
                kind,
                at,
                channel=channel,
                amount=round(rng.uniform(5, 300), 2),
                path=rng.choice(["/", "/sale", "/cart"]),
            )
        )
    return records


async def define_segments(settings: SegmentsSettings) -> None:
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with asgi_client(app) as client:
        for number, rule in enumerate(twenty_segments()):
            body = {"id": f"bench-{number:02d}", "name": f"bench {number}", "rule": rule}
            response = await client.post("/v1/segments", json=body, headers=headers)
            assert response.status_code == 201, response.text


async def raw_consume_ceiling(settings: TouchlineSettings, records: int) -> Rate:
    """Records/s of a bare aiokafka consumer reading and decoding the same allowed-stream records."""

    async def once(_: int) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest")
        topic = settings.topic(CUSTOMER_ALLOWED)
        partitions = [TopicPartition(topic, p) for p in range(CUSTOMER_ALLOWED.partitions)]
        consumer.assign(partitions)
        await consumer.start()
        try:
            await consumer.seek_to_beginning(*partitions)
            seen = 0
            while seen < records:
                for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                    for record in batch:
                        decode_allowed(record.value or b"")
                    seen += len(batch)
        finally:
            await consumer.stop()

    return await measure("raw aiokafka consume + decode of the same records (ceiling)", 3, records, once)


async def probe_latency(settings: TouchlineSettings) -> list[float]:
    """Probes at a steady rate, one per customer; seconds from each probe's received_at to its change."""
    sent: dict[str, float] = {}
    consumer = AIOKafkaConsumer(
        settings.topic(SEGMENT_MEMBERSHIP),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="latest",
        isolation_level="read_committed",
    )
    await consumer.start()
    producer = create_producer(settings)
    await producer.start()
    latencies: dict[str, float] = {}

    async def read() -> None:
        async for record in consumer:
            change = decode(SegmentMembershipChange, record.value or b"")
            if change.segment_id == "bench-19" and change.customer_id in sent:
                latencies.setdefault(change.customer_id, time.time() - sent[change.customer_id])
                if len(latencies) == PROBES:
                    return

    try:
        reading = asyncio.create_task(read())
        await asyncio.sleep(2)  # the consumer's partitions assigned, at the end of the topic
        topic, started = settings.topic(CUSTOMER_ALLOWED), time.perf_counter()
        for number in range(PROBES):
            customer = f"b-{number * 31 % CUSTOMERS:06d}"
            _, value = allowed_touch(customer, f"probe-{number}", "probe", datetime.now(UTC))
            sent[customer] = decode_allowed(value).event.received_at.timestamp()  # type: ignore[union-attr]
            await send_partitioned(producer, topic, [(customer.encode(), value)])
            await asyncio.sleep(max(0.0, started + (number + 1) / PROBES_PER_SECOND - time.perf_counter()))
        await asyncio.wait_for(reading, timeout=120)
        return list(latencies.values())
    finally:
        await producer.stop()
        await consumer.stop()


async def run(logs: Path) -> list[str]:
    async with bench_topics() as topics, bench_database() as dsn:
        settings = SegmentsSettings(
            topic_prefix=topics.topic_prefix, pg_dsn=dsn, api_keys={KEY: ["segments:admin"]}
        )
        await define_segments(settings)
        env = {
            "TOUCHLINE_TOPIC_PREFIX": topics.topic_prefix,
            "TOUCHLINE_PG_DSN": dsn,
            "TOUCHLINE_LOG_LEVEL": "WARNING",
        }
        evaluator = worker("services.segments", "bench-segment-evaluator", env, logs).start()
        topic = topics.topic(CUSTOMER_ALLOWED)
        partitions = [TopicPartition(topic, p) for p in range(CUSTOMER_ALLOWED.partitions)]
        producer = create_producer(topics)
        await producer.start()
        try:
            # Each round's backlog is produced while the evaluator is frozen (the producer would compete
            # for the same two cores), then the catch-up is timed.
            rates = []
            for round_number in range(ROUNDS):
                evaluator.pause()
                await asyncio.gather(*await send_partitioned(producer, topic, backlog(round_number)))
                target = sum((await end_offsets(topics, partitions)).values())
                started = time.perf_counter()
                evaluator.resume()
                while await evaluated_position(dsn, topic) < target:
                    await asyncio.sleep(0.1)
                rates.append(CUSTOMERS / (time.perf_counter() - started))
            evaluation = Rate(f"evaluator, 20 segments, {CUSTOMERS:,} customers, backlog", rates)
            latencies = await probe_latency(topics)
        finally:
            await producer.stop()
            evaluator.stop()
        ceiling = await raw_consume_ceiling(topics, ROUNDS * CUSTOMERS)
    return [
        "segments",
        evaluation.line(),
        ceiling.line("records/s"),
        f"  ratio evaluator / raw consume: {evaluation.median / ceiling.median:.3f}",
        f"  received_at -> segment.membership, {len(latencies)} probes at {PROBES_PER_SECOND}/s:"
        f" p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms",
    ]
