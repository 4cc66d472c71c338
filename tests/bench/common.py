"""What every benchmark shares: rounds, medians, a report line, and a stack of its own topics."""

import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from shared.db import migrate
from shared.kafka import ensure_topics
from shared.settings import TouchlineSettings
from tests.helpers import delete_topics_with_prefix


@dataclass(frozen=True)
class Rate:
    name: str
    rounds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    def line(self, unit: str = "events/s") -> str:
        spread = f"min {min(self.rounds):,.0f}, max {max(self.rounds):,.0f}"
        return f"  {self.name:<44} median {self.median:>10,.0f} {unit}  ({spread}, {len(self.rounds)} rounds)"


async def measure(name: str, rounds: int, count: int, run_once: Callable[[int], Awaitable[None]]) -> Rate:
    """`run_once(round)` handles `count` items; the rate of each round, timed from outside."""
    rates = []
    for round_number in range(rounds):
        started = time.perf_counter()
        await run_once(round_number)
        rates.append(count / (time.perf_counter() - started))
    return Rate(name, rates)


@asynccontextmanager
async def bench_topics() -> AsyncIterator[TouchlineSettings]:
    settings = TouchlineSettings(topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    await ensure_topics(settings)
    try:
        yield settings
    finally:
        await delete_topics_with_prefix(settings.kafka_bootstrap, settings.topic_prefix)


@asynccontextmanager
async def bench_database() -> AsyncIterator[str]:
    """A migrated database of the benchmark's own on the local cluster; its DSN."""
    base = TouchlineSettings().pg_dsn.get_secret_value().rsplit("/", 1)[0]
    name = f"touchline_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{base}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    migrate(f"{base}/{name}")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(f"{base}/postgres")
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
