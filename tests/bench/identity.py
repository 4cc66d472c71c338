"""Identity resolver: catching up a backlog of touches naming identities, against a raw aiokafka
consume + produce of the same records, with the resolver's and PostgreSQL's CPU per touch."""

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import TopicPartition

from shared.events import IdentifiedTouch
from shared.kafka import create_producer, send_partitioned
from shared.serialization import encode
from shared.settings import TouchlineSettings
from shared.topics import IDENTITY_INBOUND
from tests.bench.common import Rate, bench_database, bench_topics
from tests.bench.consent import raw_ceiling
from tests.bench.stack import Stack, cpu_seconds, cpu_used
from tests.bench.timeline import end_offsets, wait_until_committed
from tests.helpers import worker

RECORDS = 50_000
PEOPLE = 5_000
ROUNDS = 3


def inbound(round_number: int) -> list[tuple[bytes, bytes]]:
    """What channels send of PEOPLE people: anonymous visits, opens known by address, card purchases,
    and logins naming a customer id with the visitor's cookie and address, which link and merge."""
    rng = random.Random(round_number)
    now = datetime.now(UTC)
    records = []
    for number in range(RECORDS):
        person = rng.randrange(PEOPLE)
        anonymous, email = f"r{round_number}-a{person}", f"p{person}@r{round_number}.example"
        customer, identities = None, {"anonymous_id": anonymous}
        kind = rng.random()
        if kind < 0.3:
            identities = {"email": email}
        elif kind < 0.4:
            identities = {"loyalty_card": f"r{round_number}-L{person}"}
        elif kind < 0.6:
            customer, identities = f"r{round_number}-c{person}", {"anonymous_id": anonymous, "email": email}
        touch = IdentifiedTouch(
            event_id=f"r{round_number}-e{number}",
            customer_id=customer,
            identities=identities,
            type="page.viewed",
            channel="web",
            occurred_at=now - timedelta(seconds=number),
            received_at=now,
            source="bench",
        )
        records.append((b"", encode(touch)))
    return records


async def resolver_rate(settings: TouchlineSettings, dsn: str, logs: Path) -> tuple[Rate, dict[str, float]]:
    env = {
        "TOUCHLINE_TOPIC_PREFIX": settings.topic_prefix,
        "TOUCHLINE_PG_DSN": dsn,
        "TOUCHLINE_LOG_LEVEL": "WARNING",
    }
    resolver = worker("services.identity", "bench-identity-resolver", env, logs).start()
    stack = Stack({"identity-resolver": resolver}, {})
    topic, group = settings.topic(IDENTITY_INBOUND), f"{settings.topic_prefix}touchline-identity"
    partitions = [TopicPartition(topic, 0)]
    producer = create_producer(settings)
    await producer.start()
    rates, cpu = [], []
    try:
        await asyncio.gather(*await send_partitioned(producer, topic, inbound(99)[:100]))
        await wait_until_committed(settings, group, await end_offsets(settings, partitions))
        for round_number in range(ROUNDS):
            resolver.pause()  # produced while frozen, so the producer's CPU is not counted with it
            await asyncio.gather(*await send_partitioned(producer, topic, inbound(round_number)))
            ends = await end_offsets(settings, partitions)
            before, started = cpu_seconds(stack), time.perf_counter()
            resolver.resume()
            await wait_until_committed(settings, group, ends)
            rates.append(RECORDS / (time.perf_counter() - started))
            cpu.append(cpu_used(before, cpu_seconds(stack)))
    finally:
        await producer.stop()
        resolver.stop()
    per_thousand = {name: sorted(c[name] for c in cpu)[ROUNDS // 2] * 1000 / RECORDS for name in cpu[0]}
    return Rate("identity resolver, backlog -> outputs and offsets committed", rates), per_thousand


async def run(logs: Path) -> list[str]:
    async with bench_topics() as settings, bench_database() as dsn:
        rate, cpu = await resolver_rate(settings, dsn, logs)
        ceiling = await raw_ceiling(settings, IDENTITY_INBOUND, RECORDS, ROUNDS)
    return [
        f"identity resolver: {RECORDS:,} touches naming identities a round, {PEOPLE:,} people, 20% logins",
        ceiling.line("records/s"),
        rate.line("records/s"),
        f"  ratio resolver / raw consume+produce (medians): {rate.median / ceiling.median:.2f}",
        "  CPU ms per touch (median round): "
        + ", ".join(f"{name} {seconds:.3f}" for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])),
    ]
