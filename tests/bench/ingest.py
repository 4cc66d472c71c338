"""Ingest over HTTP (batches of 100, through a real API process) against a raw aiokafka producer."""

import asyncio
import os
import socket
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import httpx
import orjson

from services.ingest.domain import stamped_records
from shared.demo import journeys
from shared.events import TouchEventIn
from shared.kafka import create_producer, send_partitioned
from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_LOG
from tests.bench.common import Rate, bench_topics, measure
from tests.helpers import ServiceProcess

EVENTS = 20_000
BATCH = 100
CONCURRENT_REQUESTS = 8
ROUNDS = 5
KEY = "bench-writer"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def demo_events(round_number: int) -> list[TouchEventIn]:
    """Exactly EVENTS realistic touches, different each round so no round replays another's ids."""
    return list(islice(journeys(EVENTS, datetime.now(UTC), seed=round_number), EVENTS))


def batches_for(round_number: int) -> list[bytes]:
    events = [event.model_dump(mode="json") for event in demo_events(round_number)]
    return [orjson.dumps(events[start : start + BATCH]) for start in range(0, EVENTS, BATCH)]


async def raw_producer_rates(settings: TouchlineSettings) -> list[Rate]:
    """The ceiling: ready-encoded records through an already started producer, nothing else timed."""
    now = datetime.now(UTC)
    prepared = {
        round_number: stamped_records(demo_events(round_number), now, "bench")
        for round_number in range(ROUNDS)
    }
    producer = create_producer(settings)
    await producer.start()
    topic = settings.topic(CUSTOMER_LOG)

    async def per_record(round_number: int) -> None:
        pending = [await producer.send(topic, value, key=key) for key, value in prepared[round_number]]
        await asyncio.gather(*pending)

    async def batched(round_number: int) -> None:
        await asyncio.gather(*await send_partitioned(producer, topic, prepared[round_number]))

    try:
        await per_record(0)  # warm-up: connections and metadata
        return [
            await measure("raw aiokafka producer, send() per record", ROUNDS, EVENTS, per_record),
            await measure("raw aiokafka producer, batch API per partition", ROUNDS, EVENTS, batched),
        ]
    finally:
        await producer.stop()


async def http_rate(settings: TouchlineSettings, log_dir: Path) -> Rate:
    port = free_port()
    env = {
        "TOUCHLINE_TOPIC_PREFIX": settings.topic_prefix,
        "TOUCHLINE_INGEST_PORT": str(port),
        "TOUCHLINE_API_KEYS": orjson.dumps({KEY: {"source": "bench", "scopes": ["events:write"]}}).decode(),
        "TOUCHLINE_LOG_LEVEL": "WARNING",
    }
    api = ServiceProcess("services.ingest", "api", env, log_dir / "bench-ingest-api.log").start()
    try:
        await api.wait_ready(f"http://127.0.0.1:{port}/readyz")
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        limits = httpx.Limits(max_connections=CONCURRENT_REQUESTS)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, limits=limits
        ) as client:

            async def post_all(bodies: list[bytes]) -> None:
                queue = iter(bodies)

                async def sender() -> None:
                    for body in queue:
                        response = await client.post("/v1/events", content=body)
                        assert response.status_code == 202, response.text

                await asyncio.gather(*(sender() for _ in range(CONCURRENT_REQUESTS)))

            await post_all(batches_for(99)[:20])  # warm-up: connections, producer metadata
            prepared = {round_number: batches_for(round_number) for round_number in range(ROUNDS)}
            return await measure(
                f"HTTP POST /v1/events, batches of {BATCH}, {CONCURRENT_REQUESTS} in flight",
                ROUNDS,
                EVENTS,
                lambda round_number: post_all(prepared[round_number]),
            )
    finally:
        api.stop()


async def run(log_dir: Path) -> list[str]:
    async with bench_topics() as settings:
        per_record, batched = await raw_producer_rates(settings)
        http = await http_rate(settings, log_dir)
    return [
        f"ingest: {EVENTS:,} demo events a round, acks=all, idempotent, same broker, same run "
        f"(cores: {os.cpu_count()})",
        per_record.line(),
        batched.line(),
        http.line(),
        f"  ratio HTTP / raw send() per record: {http.median / per_record.median:.2f}  (target >= 0.50)",
        f"  ratio HTTP / raw batch API:         {http.median / batched.median:.2f}",
    ]
