"""Ingest over HTTP (batches of 100, through a real API process) against a raw aiokafka producer."""

import asyncio
import os
import socket
from contextlib import ExitStack
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import orjson

from services.ingest.domain import routed_records
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
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: each probe stays bound until all are found, or the kernel may hand
    one port out twice (a stack once started the console on the identity API's port)."""
    with ExitStack() as probes:
        sockets = [probes.enter_context(socket.socket()) for _ in range(count)]
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]


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
        round_number: routed_records(demo_events(round_number), now, "bench").customer_log
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


class KeepAliveClient:
    """A minimal HTTP/1.1 client on one kept-alive connection, sending pre-built requests.

    httpx spends more CPU per request than the server being measured; on two shared cores that would
    be measured too. This does only what the benchmark needs: write a request, read the status line,
    the headers and Content-Length bytes of body.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> "KeepAliveClient":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def post_request(body: bytes) -> bytes:
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def http_rate(settings: TouchlineSettings, log_dir: Path) -> Rate:
    port = free_port()
    env = {
        "TOUCHLINE_TOPIC_PREFIX": settings.topic_prefix,
        "TOUCHLINE_INGEST_PORT": str(port),
        "TOUCHLINE_API_KEYS": orjson.dumps({KEY: {"source": "bench", "scopes": ["events:write"]}}).decode(),
        "TOUCHLINE_LOG_LEVEL": "WARNING",
    }
    api = ServiceProcess("services.ingest", "api", env, log_dir / "bench-ingest-api.log").start()
    clients: list[KeepAliveClient] = []
    try:
        await api.wait_ready(f"http://127.0.0.1:{port}/readyz")
        clients = [await KeepAliveClient.connect(port) for _ in range(CONCURRENT_REQUESTS)]

        async def post_all(requests: list[bytes]) -> None:
            queue = iter(requests)

            async def sender(client: KeepAliveClient) -> None:
                for request in queue:
                    status, body = await client.send(request)
                    assert status == 202, body

            await asyncio.gather(*(sender(client) for client in clients))

        await post_all([post_request(body) for body in batches_for(99)[:20]])  # warm-up
        prepared = {n: [post_request(body) for body in batches_for(n)] for n in range(ROUNDS)}
        return await measure(
            f"HTTP POST /v1/events, batches of {BATCH}, {CONCURRENT_REQUESTS} in flight",
            ROUNDS,
            EVENTS,
            lambda round_number: post_all(prepared[round_number]),
        )
    finally:
        for client in clients:
            await client.close()
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
