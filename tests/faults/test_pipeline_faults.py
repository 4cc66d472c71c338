"""The whole pipeline under steady load, one fault at a time, then an accounting that must read zero.

`make test` runs the short form (300 touches/s for 20 s; worker kills and poison records). `make faults`
runs every scenario at 1,000 touches/s for 60 s (TOUCHLINE_FAULTS_FULL=1), including restarts of the
local PostgreSQL and Kafka (so not beside a `make run` you care about) and a broker of a three-node
cluster, and writes the table the README quotes to bench/results/faults.md.
"""

import asyncio
import os
import re
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from shared.kafka import ensure_topics
from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_ALLOWED, CUSTOMER_LOG, IDENTITY_INBOUND, TOUCH_INBOUND
from tests.bench.common import bench_database
from tests.bench.pipeline import KEY, SCOPES, setup
from tests.bench.stack import Stack, start_stack
from tests.faults.pipeline import (
    Load,
    Offered,
    record_result,
    run_scenario,
    sentinels,
)
from tests.helpers import ROOT, delete_topics_with_prefix, produce

FULL = os.environ.get("TOUCHLINE_FAULTS_FULL") == "1"
LOAD = Load.from_environment(FULL)
LOCAL = ROOT / "deploy/local"
CLUSTER_ENV = {
    "TOUCHLINE_RUN_DIR": str(ROOT / ".run/faults-cluster"),
    "TOUCHLINE_KAFKA_NODES": "3",
    "TOUCHLINE_KAFKA_PORT": "29392",
    "TOUCHLINE_KAFKA_CONTROLLER_PORT": "29492",
}
CLUSTER_BOOTSTRAP = "127.0.0.1:29392,127.0.0.1:29393,127.0.0.1:29394"


def script(name: str, *arguments: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        ["bash", str(LOCAL / name), *arguments], env=os.environ | (env or {}), check=True, timeout=300
    )


@asynccontextmanager
async def pipeline(
    scenario: str, logs: Path, settings: TouchlineSettings | None = None
) -> AsyncIterator[tuple[Stack, TouchlineSettings, str]]:
    """Every process on a run's own topics and database, the demo and sentinel segments defined."""
    base = settings or TouchlineSettings()
    topics = base.model_copy(update={"topic_prefix": f"faults-{uuid.uuid4().hex[:8]}."})
    await ensure_topics(topics)
    try:
        async with bench_database() as dsn:
            env = {
                "TOUCHLINE_LOG_LEVEL": "WARNING",
                "TOUCHLINE_API_KEYS": orjson.dumps({KEY: SCOPES}).decode(),
                "TOUCHLINE_TOPIC_PREFIX": topics.topic_prefix,
                "TOUCHLINE_PG_DSN": dsn,
                "TOUCHLINE_KAFKA_BOOTSTRAP": topics.kafka_bootstrap,
                "TOUCHLINE_KAFKA_REPLICATION_FACTOR": str(topics.kafka_replication_factor),
                "TOUCHLINE_KAFKA_MIN_INSYNC_REPLICAS": str(topics.kafka_min_insync_replicas),
            }
            (logs / scenario).mkdir(exist_ok=True)
            stack = await start_stack(env, logs / scenario)
            try:
                # The demo and sentinel segments, marketing granted to the sentinel customers.
                await setup(stack, sentinels(f"{scenario}-recovery") + sentinels(f"{scenario}-end"))
                yield stack, topics, dsn
                dead = [name for name, started in stack.processes.items() if not started.alive()]
                assert not dead, f"processes died during {scenario}: {dead}"
            finally:
                stack.stop()
    finally:
        await delete_topics_with_prefix(topics.kafka_bootstrap, topics.topic_prefix)


def kill_twice(name: str) -> Callable[[Stack], Awaitable[None]]:
    """SIGKILL mid-stream, restarted a second later as the supervisor does; then once more."""

    async def fault(stack: Stack) -> None:
        for _ in range(2):
            stack.processes[name].kill()
            await asyncio.sleep(1)
            stack.processes[name].start()
            await asyncio.sleep(LOAD.seconds / 6)

    return fault


async def restart_postgres(stack: Stack) -> None:
    await asyncio.to_thread(script, "postgres.sh", "stop")
    await asyncio.sleep(3)
    await asyncio.to_thread(script, "postgres.sh", "start")


async def restart_kafka(stack: Stack) -> None:
    await asyncio.to_thread(script, "kafka.sh", "stop")
    await asyncio.sleep(3)
    await asyncio.to_thread(script, "kafka.sh", "start")


async def kill_one_broker(stack: Stack) -> None:
    pid = int((Path(CLUSTER_ENV["TOUCHLINE_RUN_DIR"]) / "kafka/node-2/kafka.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(LOAD.seconds / 4)
    await asyncio.to_thread(script, "kafka.sh", "start-node", "2", env=CLUSTER_ENV)


async def nothing(stack: Stack) -> None:
    return None


POISON_PROPERTIES = b'{"note": "a\\u0000b"}'


def poisoned_touch(number: int, **fields: object) -> bytes:
    event = {
        "event_id": f"rogue-poison-{number}",
        "customer_id": f"rogue-poison-{number}",
        "type": "poison.test",
        "channel": "web",
        "occurred_at": "2026-11-30T10:00:00Z",
        "properties": {"note": "PLACEHOLDER"},
    } | fields
    return orjson.dumps(event).replace(b'{"note":"PLACEHOLDER"}', POISON_PROPERTIES)


def logged(value: bytes) -> bytes:
    """A client touch as the customer log holds it, as if a producer had skipped ingest."""
    stamp = b',"schema_version":1,"kind":"touch","received_at":"2026-11-30T10:00:01Z","source":"rogue"}'
    return value[:-1] + stamp


def identified(value: bytes) -> bytes:
    """A client touch as identity.inbound holds it, as if a producer had skipped ingest."""
    stamp = (
        b',"identities":{"email":"rogue@poison.example"},"schema_version":1,"kind":"identified",'
        b'"received_at":"2026-11-30T10:00:01Z","source":"rogue"}'
    )
    return value[:-1] + stamp


def allowed(value: bytes) -> bytes:
    return (
        b'{"schema_version":1,"kind":"allowed","purposes":["profiling","marketing"],"event":'
        + logged(value)
        + b"}"
    )


def poison_records() -> dict[str, list[bytes]]:
    """One record of each kind ingest refuses, on every topic a stage reads, as rogue producers write them."""
    nul = poisoned_touch(1)
    ancient = poisoned_touch(2, occurred_at="0001-01-01T00:00:00+01:00", properties={})
    far = poisoned_touch(3, occurred_at="9999-12-31T23:59:59-01:00", properties={})
    not_a_number = poisoned_touch(4).replace(POISON_PROPERTIES, b'{"amount": NaN}')
    garbage = b'{"rogue-poison-5": '
    kinds = [nul, ancient, far, not_a_number, garbage]
    return {
        TOUCH_INBOUND.name: kinds,
        CUSTOMER_LOG.name: [logged(value) if value is not garbage else value for value in kinds],
        IDENTITY_INBOUND.name: [identified(value) if value is not garbage else value for value in kinds],
        CUSTOMER_ALLOWED.name: [allowed(value) if value is not garbage else value for value in kinds],
    }


async def inject_poison(settings: TouchlineSettings, offered: Offered) -> None:
    for topic, values in poison_records().items():
        offered.poison += len(values)
        records: list[tuple[bytes | None, bytes | None]] = [(b"poison", value) for value in values]
        await produce(settings.kafka_bootstrap, f"{settings.topic_prefix}{topic}", records)


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Callable[[Stack], Awaitable[None]]
    full_only: bool = False
    on_cluster: bool = False
    poison: bool = False

    @property
    def slug(self) -> str:
        """For log folders and sentinel customer ids."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


SCENARIOS = [
    Scenario("SIGKILL consent-filter x2", kill_twice("consent-filter")),
    Scenario("SIGKILL timeline-projector x2", kill_twice("timeline-projector")),
    Scenario("SIGKILL segments-evaluator x2", kill_twice("segments-evaluator")),
    Scenario("SIGKILL identity-resolver x2", kill_twice("identity-resolver")),
    Scenario("SIGKILL ingest-worker x2", kill_twice("ingest-worker"), full_only=True),
    Scenario("poison records on every topic", nothing, poison=True),
    Scenario("PostgreSQL restart", restart_postgres, full_only=True),
    Scenario("Kafka restart (single node)", restart_kafka, full_only=True),
    Scenario("one of three brokers SIGKILLed, back", kill_one_broker, full_only=True, on_cluster=True),
]


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if FULL or not s.full_only], ids=lambda s: s.name)
async def test_nothing_is_lost_doubled_or_leaked(scenario: Scenario, logs: Path) -> None:
    settings = None
    if scenario.on_cluster:
        await asyncio.to_thread(script, "kafka.sh", "start", env=CLUSTER_ENV)
        settings = TouchlineSettings(
            kafka_bootstrap=CLUSTER_BOOTSTRAP, kafka_replication_factor=3, kafka_min_insync_replicas=2
        )
    try:
        async with pipeline(scenario.slug, logs, settings) as (stack, topics, dsn):

            async def inject(offered: Offered) -> None:
                await inject_poison(topics, offered)

            accounting = await run_scenario(
                scenario.slug,
                stack,
                topics,
                dsn,
                LOAD,
                scenario.fault,
                inject if scenario.poison else None,
            )
    finally:
        if scenario.on_cluster:
            await asyncio.to_thread(script, "kafka.sh", "stop", env=CLUSTER_ENV)
    if FULL:
        record_result(accounting, ROOT / "bench/results/faults.md")
    print(accounting.row(), accounting.details)
    assert (accounting.lost, accounting.doubled, accounting.violations, accounting.valid_parked) == (
        0,
        0,
        0,
        0,
    ), accounting.details
    assert accounting.stored > 0
    assert accounting.details["resolved"] > 0, "the identity resolver carried part of the load"
    if scenario.poison:
        # The ingest worker refuses every kind; later stages park what they cannot read or store.
        assert accounting.details["parked"] >= len(poison_records()[TOUCH_INBOUND.name])
