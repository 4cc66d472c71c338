"""The whole pipeline, every process started as `make run` starts them, on one broker and one database.

- sustained: N touches over C customers with consent changes mixed in, posted over HTTP as fast as the
  client goes; timed from the first POST until the last touch of every partition is in the timeline and
  its membership change is on segment.membership (a sentinel touch per partition, posted last: order per
  partition is kept by every stage, so its arrival means everything before it arrived);
- the pipeline ratio: that rate / the rate of HTTP ingest alone (the same touches, the same client, an
  ingest API on topics nothing reads) in the same run, each ingest-alone round just before its pipeline
  round;
- latency at a fixed offered load: one probe touch per batch, HTTP 202 -> its timeline row committed and
  HTTP 202 -> its segment.membership record;
- CPU seconds per 1,000 touches of every process, Kafka and PostgreSQL included, in both settings; how
  busy the pipeline kept the machine, and the ratio it could reach at most with its later stages free.

Sizes come from TOUCHLINE_BENCH_PIPELINE_{TOUCHES,CUSTOMERS,ROUNDS,RATE,SECONDS}.
"""

import asyncio
import os
import platform
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from shared.auth import SCOPES as ALL_SCOPES
from shared.demo import DEMO_SEGMENTS, customer_journey
from shared.topics import CUSTOMER_PARTITIONS, SEGMENT_MEMBERSHIP
from tests.bench import bare
from tests.bench.common import Rate, bench_database, bench_topics, percentile
from tests.bench.ingest import KeepAliveClient, free_ports
from tests.bench.stack import Stack, cpu_seconds, cpu_used, start_stack
from tests.helpers import ROOT, ServiceProcess

TOUCHES = int(os.environ.get("TOUCHLINE_BENCH_PIPELINE_TOUCHES", "100000"))
CUSTOMERS = int(os.environ.get("TOUCHLINE_BENCH_PIPELINE_CUSTOMERS", "10000"))
ROUNDS = int(os.environ.get("TOUCHLINE_BENCH_PIPELINE_ROUNDS", "3"))
OFFERED_PER_SECOND = int(os.environ.get("TOUCHLINE_BENCH_PIPELINE_RATE", "2000"))
OFFERED_SECONDS = int(os.environ.get("TOUCHLINE_BENCH_PIPELINE_SECONDS", "60"))
BATCH = 100
CONNECTIONS = 8
TOUCHES_PER_CONSENT_CHANGE = 50
KEY = "bench-admin"
SCOPES = list(ALL_SCOPES)
RESULTS = ROOT / "bench/results/latest.json"
CORES = os.cpu_count() or 1
# What every touch costs before any stage after ingest has done its work, and what such a stage's
# records cost the broker and the database.
INFRASTRUCTURE = ("kafka", "postgresql", "ingest-api", "bench-client")
PROBE_SEGMENTS = [
    {
        "id": "bench-sentinel",
        "name": "sentinel",
        "rule": {"count": {"type": "bench.sentinel", "within": "1d"}, "gte": 1},
    },
    {
        "id": "bench-probe",
        "name": "probe",
        "rule": {"count": {"type": "bench.probe", "within": "1d"}, "gte": 1},
    },
]


def request(method: str, path: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def touch(event_id: str, customer: str, kind: str, at: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "customer_id": customer,
        "type": kind,
        "channel": "web",
        "occurred_at": at.isoformat(),
        "properties": {},
    }


WARM_UP = request(
    "POST",
    "/v1/events",
    orjson.dumps([touch("warm-up", "warm-up", "page.viewed", datetime(2026, 1, 1, tzinfo=UTC))]),
)


def workload(round_number: int) -> list[dict[str, Any]]:
    """TOUCHES demo touches over CUSTOMERS customers, customers interleaved as real traffic is."""
    now = datetime.now(UTC)
    journeys = [
        iter(customer_journey(f"cust-{number:05d}", now, weeks=2, seed=round_number))
        for number in range(1, CUSTOMERS + 1)
    ]
    touches: list[dict[str, Any]] = []
    while len(touches) < TOUCHES and journeys:
        alive = []
        for journey in journeys:
            event = next(journey, None)
            if event is not None:
                body = event.model_dump(mode="json")
                body["event_id"] = f"r{round_number}-{body['event_id']}"
                touches.append(body)
                alive.append(journey)
        journeys = alive
    return touches[:TOUCHES]


def consent_requests(round_number: int) -> list[bytes]:
    """One consent change per TOUCHES_PER_CONSENT_CHANGE touches: mostly marketing opt-ins, some
    opt-outs, a few erasures, as a data protection office and a preference centre send them."""
    rng = random.Random(f"consent-{round_number}")
    requests = []
    for _ in range(TOUCHES // TOUCHES_PER_CONSENT_CHANGE):
        customer = f"cust-{rng.randrange(1, CUSTOMERS + 1):05d}"
        draw = rng.random()
        if draw < 0.03:
            requests.append(request("POST", f"/v1/customers/{customer}/erasure"))
        else:
            status = "granted" if draw < 0.8 else "denied"
            body = orjson.dumps({"status": status})
            requests.append(request("PUT", f"/v1/customers/{customer}/consent/marketing", body))
    return requests


def one_per_partition(prefix: str) -> list[str]:
    """Customer ids whose records land on each of the customer-keyed partitions, one each."""
    partitioner, partitions = DefaultPartitioner(), list(range(CUSTOMER_PARTITIONS))
    found: dict[int, str] = {}
    for number in range(10_000):
        customer = f"{prefix}-{number}"
        found.setdefault(partitioner(customer.encode(), partitions, partitions), customer)
        if len(found) == CUSTOMER_PARTITIONS:
            return list(found.values())
    raise RuntimeError("no id found for some partition")


class Clients:
    """CONNECTIONS kept-alive connections to one API, each used by one request at a time."""

    def __init__(self, port: int, clients: list[KeepAliveClient]) -> None:
        self.port = port
        self.free: asyncio.Queue[KeepAliveClient] = asyncio.Queue()
        for client in clients:
            self.free.put_nowait(client)
        self.all = clients

    @classmethod
    async def connect(cls, port: int, count: int = CONNECTIONS) -> "Clients":
        return cls(port, [await KeepAliveClient.connect(port) for _ in range(count)])

    async def send(self, raw: bytes, expected: int = 202) -> None:
        """As the README tells clients: after a 503, send the same request again (here after 0.5 s)."""
        client = await self.free.get()
        try:
            while (answer := await self._send(client, raw))[0] == 503:
                await asyncio.sleep(0.5)
            assert answer[0] == expected, answer[1]
        finally:
            self.free.put_nowait(client)

    async def _send(self, client: KeepAliveClient, raw: bytes) -> tuple[int, bytes]:
        try:
            return await client.send(raw)
        except (asyncio.IncompleteReadError, ConnectionError):
            # uvicorn closes a connection idle for 5 s; a client connects again and resends.
            client.reader, client.writer = await asyncio.open_connection("127.0.0.1", self.port)
            return await client.send(raw)

    async def send_all(self, requests: list[bytes], expected: int = 202) -> None:
        queue = iter(requests)

        async def sender() -> None:
            for raw in queue:
                await self.send(raw, expected)

        await asyncio.gather(*(sender() for _ in self.all))

    async def warm_up(self, raw: bytes) -> None:
        """Until one request is accepted: new topics' leaders and the producer's metadata settle first."""
        client = await self.free.get()
        try:
            for _ in range(30):
                status, _body = await client.send(raw)
                if status == 202:
                    return
                await asyncio.sleep(1)
            raise RuntimeError("the API never accepted the warm-up request")
        finally:
            self.free.put_nowait(client)

    async def close(self) -> None:
        for client in self.all:
            await client.close()


def touch_batches(touches: list[dict[str, Any]]) -> list[bytes]:
    return [
        request("POST", "/v1/events", orjson.dumps(touches[start : start + BATCH]))
        for start in range(0, len(touches), BATCH)
    ]


@dataclass
class Arrivals:
    """When each awaited customer showed up in the timeline and on segment.membership."""

    timeline: dict[str, float] = field(default_factory=dict)
    membership: dict[str, float] = field(default_factory=dict)
    awaited: set[str] = field(default_factory=set)


async def watch_membership(bootstrap: str, topic: str, arrivals: Arrivals, started: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="latest", isolation_level="read_committed"
    )
    await consumer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        for partition in consumer.assignment():
            await consumer.position(partition)
        started.set()
        while True:
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for record in batch:
                    customer = (record.key or b"").decode()
                    if customer in arrivals.awaited:
                        arrivals.membership.setdefault(customer, now)
    finally:
        await consumer.stop()


async def watch_timeline(dsn: str, arrivals: Arrivals) -> None:
    """Polls for the awaited customers' profile rows, written in the transaction that stores their touches.

    Profiles, not events: a look-up of a few ids in the hash-partitioned events table probes every
    partition (2.4 ms a poll, 3% of a core at 40 polls/s, measured with pg_stat_statements), in the
    profiles' primary key one index each. Custom plans: the generic plan PostgreSQL settles on while the
    table is nearly empty is a sequential scan, 7.6 ms a poll over the churned table under load."""
    connection = await asyncpg.connect(dsn, server_settings={"plan_cache_mode": "force_custom_plan"})
    try:
        generation = await connection.fetchval("SELECT generation FROM timeline_active")
        query = f"SELECT customer_id FROM {generation}.profiles WHERE customer_id = ANY($1::text[])"
        while True:
            outstanding = [c for c in arrivals.awaited if c not in arrivals.timeline]
            if outstanding:
                now = time.perf_counter()
                for row in await connection.fetch(query, outstanding):
                    arrivals.timeline.setdefault(row[0], now)
            await asyncio.sleep(0.025)
    finally:
        await connection.close()


async def until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the pipeline did not deliver every sentinel in time")
        await asyncio.sleep(0.02)


async def setup(stack: Stack, customers: list[str]) -> None:
    """Probe segments defined and marketing granted to every sentinel and probe customer beforehand."""
    segments = await Clients.connect(stack.ports["segments"], 1)
    consent = await Clients.connect(stack.ports["consent"])
    try:
        for definition in [*DEMO_SEGMENTS, *PROBE_SEGMENTS]:
            await segments.send(request("POST", "/v1/segments", orjson.dumps(definition)), 201)
        grant = orjson.dumps({"status": "granted"})
        await consent.send_all(
            [request("PUT", f"/v1/customers/{c}/consent/marketing", grant) for c in customers]
        )
    finally:
        await segments.close()
        await consent.close()
    await asyncio.sleep(3)  # the evaluator has read the definitions


async def sustained_round(
    stack: Stack, arrivals: Arrivals, round_number: int
) -> tuple[float, dict[str, float]]:
    """Touches/s from the first POST to the last sentinel delivered, and each process's CPU seconds."""
    batches = touch_batches(workload(round_number))
    changes = consent_requests(round_number)
    now = datetime.now(UTC)
    sentinels = one_per_partition(f"sentinel-r{round_number}")
    final = [
        request("POST", "/v1/events", orjson.dumps([touch(f"{c}-s", c, "bench.sentinel", now)]))
        for c in sentinels
    ]
    arrivals.awaited |= set(sentinels)
    touches = await Clients.connect(stack.ports["ingest"])
    consent = await Clients.connect(stack.ports["consent"], 1)
    await touches.warm_up(WARM_UP)
    before = cpu_seconds(stack)
    started = time.perf_counter()
    try:
        await asyncio.gather(touches.send_all(batches), consent.send_all(changes))
        await touches.send_all(final)
        await until(lambda: all(c in arrivals.timeline and c in arrivals.membership for c in sentinels), 1800)
    finally:
        await touches.close()
        await consent.close()
    elapsed = time.perf_counter() - started
    return TOUCHES / elapsed, cpu_used(before, cpu_seconds(stack))


async def ingest_alone(
    env: dict[str, str], logs: Path, round_number: int, idle: Stack, bare_dsn: str | None = None
) -> tuple[float, dict[str, float]]:
    """The same touches through an ingest API alone, on topics of its own that nothing reads; touches/s
    and the CPU seconds the API, Kafka and the client used meanwhile, and the `idle` stack's processes
    (up between their rounds, with nothing to read: what they spend is taken from ingest alone).

    With `bare_dsn`, the bare pipeline: its hops (tests/bench/bare.py) read those topics and write that
    database, the round's consent changes go meanwhile to a consent API of its own, as in the pipeline
    round (they are the workload's, whatever the stages do), and the round lasts until the hops have
    committed every touch."""
    async with bench_topics() as topics:
        ingest_port, consent_port = free_ports(2)
        api_env = env | {
            "TOUCHLINE_TOPIC_PREFIX": topics.topic_prefix,
            "TOUCHLINE_INGEST_PORT": str(ingest_port),
            "TOUCHLINE_CONSENT_PORT": str(consent_port),
        }
        api = ServiceProcess("services.ingest", "api", api_env, logs / "bench-ingest-alone.log").start()
        alone = Stack({"ingest-api": api}, {"ingest": ingest_port})
        if bare_dsn is not None:
            bare_env = api_env | {"TOUCHLINE_PG_DSN": bare_dsn}
            alone.processes |= bare.start_hops(bare_env, logs)
            alone.processes["consent-api"] = ServiceProcess(
                "services.consent", "api", bare_env, logs / "bench-bare-consent-api.log"
            ).start()
            alone.ports["consent"] = consent_port
        try:
            for service in alone.ports:
                await alone.processes[f"{service}-api"].wait_ready(f"{alone.url(service)}/readyz")
            batches = touch_batches(workload(round_number))
            clients = await Clients.connect(ingest_port)
            # The bare round's consent changes, on one connection as in the pipeline round; none alone.
            consents = [await Clients.connect(consent_port, 1)] if bare_dsn is not None else []
            changes = consent_requests(round_number)
            try:
                await clients.warm_up(WARM_UP)
                if bare_dsn is not None:
                    await bare.caught_up(topics)  # the hops are up and have read the warm-up touch
                before, idle_before = cpu_seconds(alone), cpu_seconds(idle)
                started = time.perf_counter()
                await asyncio.gather(
                    clients.send_all(batches), *(consent.send_all(changes) for consent in consents)
                )
                if bare_dsn is not None:
                    await bare.caught_up(topics)
                rate = TOUCHES / (time.perf_counter() - started)
                used, idle_used = (
                    cpu_used(before, cpu_seconds(alone)),
                    cpu_used(idle_before, cpu_seconds(idle)),
                )
                return rate, used | {"idle-pipeline": sum(idle_used[name] for name in idle.processes)}
            finally:
                for client in [clients, *consents]:
                    await client.close()
        finally:
            alone.stop()


def probes() -> Iterator[str]:
    for number in range(OFFERED_PER_SECOND // BATCH * OFFERED_SECONDS):
        yield f"probe-{number}"


async def offered_load(stack: Stack, arrivals: Arrivals) -> tuple[list[float], list[float], float]:
    """OFFERED_PER_SECOND touches/s for OFFERED_SECONDS, in batches of BATCH each carrying one probe."""
    touches = workload(ROUNDS + 1)
    clients = await Clients.connect(stack.ports["ingest"])
    acked: dict[str, float] = {}
    interval = BATCH / OFFERED_PER_SECOND
    pending = []

    async def post(probe: str, body: list[dict[str, Any]]) -> None:
        await clients.send(request("POST", "/v1/events", orjson.dumps(body)))
        acked[probe] = time.perf_counter()

    started = time.perf_counter()
    try:
        for number, probe in enumerate(probes()):
            await asyncio.sleep(max(0.0, started + number * interval - time.perf_counter()))
            chunk = touches[(number * (BATCH - 1)) % len(touches) :][: BATCH - 1]
            body = [{**t, "event_id": f"load-{number}-{i}"} for i, t in enumerate(chunk)]
            arrivals.awaited.add(probe)
            body.append(touch(f"{probe}-p", probe, "bench.probe", datetime.now(UTC)))
            pending.append(asyncio.create_task(post(probe, body)))
        await asyncio.gather(*pending)
        achieved = len(pending) * BATCH / (time.perf_counter() - started)
        await until(lambda: all(p in arrivals.timeline and p in arrivals.membership for p in acked), 600)
    finally:
        await clients.close()
    timeline = [arrivals.timeline[p] - acked[p] for p in acked]
    membership = [arrivals.membership[p] - acked[p] for p in acked]
    return timeline, membership, achieved


def infrastructure_bound(cpu: dict[str, float], ingest_alone_per_second: float) -> float:
    """The pipeline ratio if every process but the broker, the database, the ingest API and the load
    client cost no CPU: on a machine the pipeline keeps busy, its rate is the cores over the CPU it spends
    per touch, so the CPU of those four alone caps it, however cheap the stages after ingest become."""
    floor = sum(cpu[name] for name in INFRASTRUCTURE) / 1000
    return CORES / floor / ingest_alone_per_second


def cpu_table(used: list[dict[str, float]]) -> dict[str, float]:
    """Median CPU seconds per 1,000 touches of each process over the rounds."""
    names = sorted(used[0])
    table = {name: sorted(u[name] for u in used)[len(used) // 2] * 1000 / TOUCHES for name in names}
    # The whole machine's cost: on two cores it sets the throughput, whichever process spends it.
    table["all"] = sorted(sum(u.values()) for u in used)[len(used) // 2] * 1000 / TOUCHES
    return table


def over_ingest_alone(rate: Rate, ingest: Rate) -> list[float]:
    """Each round's rate over the ingest-alone round run just before it."""
    return [each / alone for each, alone in zip(rate.rounds, ingest.rounds, strict=True)]


def cpu_line(setting: str, table: dict[str, float]) -> str:
    by_cost = sorted(table.items(), key=lambda kv: -kv[1])
    return f"  CPU seconds per 1,000 touches {setting}: " + ", ".join(f"{n} {s:.3f}" for n, s in by_cost)


async def run(logs: Path) -> list[str]:
    env = {"TOUCHLINE_LOG_LEVEL": "WARNING", "TOUCHLINE_API_KEYS": orjson.dumps({KEY: SCOPES}).decode()}
    async with bench_topics() as topics, bench_database() as dsn, bench_database() as bare_dsn:
        stack_env = env | {"TOUCHLINE_TOPIC_PREFIX": topics.topic_prefix, "TOUCHLINE_PG_DSN": dsn}
        stack = await start_stack(stack_env, logs)
        arrivals = Arrivals()
        listening = asyncio.Event()
        watchers = [
            asyncio.create_task(
                watch_membership(
                    topics.kafka_bootstrap, topics.topic(SEGMENT_MEMBERSHIP), arrivals, listening
                )
            ),
            asyncio.create_task(watch_timeline(dsn, arrivals)),
        ]
        try:
            await listening.wait()
            awaited = [c for n in range(ROUNDS) for c in one_per_partition(f"sentinel-r{n}")] + list(probes())
            await setup(stack, awaited)
            # Each pipeline round right after its ingest-alone round: this machine's speed drifts by
            # minutes, and a ratio of rounds run far apart measured the drift as much as the pipeline.
            ingest_rounds, bare_rounds, rounds = [], [], []
            for number in range(ROUNDS):
                ingest_rounds.append(await ingest_alone(env, logs, number, stack))
                bare_rounds.append(await ingest_alone(env, logs, number, stack, bare_dsn))
                rounds.append(await sustained_round(stack, arrivals, number))
            timeline, membership, achieved = await offered_load(stack, arrivals)
        finally:
            for watcher in watchers:
                watcher.cancel()
            stack.stop()
    pipeline = Rate("whole pipeline, first POST -> last sentinel delivered", [rate for rate, _ in rounds])
    ingest = Rate("HTTP ingest alone, same client, same touches", [rate for rate, _ in ingest_rounds])
    bare_pipeline = Rate("bare pipeline (tests/bench/bare.py)", [rate for rate, _ in bare_rounds])
    cpu = cpu_table([used for _, used in rounds])
    ingest_cpu = cpu_table([used for _, used in ingest_rounds])
    bare_cpu = cpu_table([used for _, used in bare_rounds])
    ratio = pipeline.median / ingest.median
    paired = over_ingest_alone(pipeline, ingest)
    bare_ratio = bare_pipeline.median / ingest.median
    bare_paired = over_ingest_alone(bare_pipeline, ingest)
    bound = infrastructure_bound(cpu, ingest.median)
    load = {
        "touches_per_second": OFFERED_PER_SECOND,
        "seconds": OFFERED_SECONDS,
        "achieved_per_second": achieved,
        "timeline_p50_ms": percentile(timeline, 0.5) * 1000,
        "timeline_p99_ms": percentile(timeline, 0.99) * 1000,
        "membership_p50_ms": percentile(membership, 0.5) * 1000,
        "membership_p99_ms": percentile(membership, 0.99) * 1000,
    }
    results = {
        "machine": {
            "cores": CORES,
            "platform": platform.platform(),
            "at": datetime.now(UTC).isoformat(),
        },
        "sizes": {
            "touches": TOUCHES,
            "customers": CUSTOMERS,
            "rounds": ROUNDS,
            "batch": BATCH,
            "connections": CONNECTIONS,
            "consent_changes": TOUCHES // TOUCHES_PER_CONSENT_CHANGE,
        },
        "pipeline_touches_per_second": pipeline.rounds,
        "ingest_alone_touches_per_second": ingest.rounds,
        "pipeline_ratio": ratio,
        "pipeline_ratio_each_round": paired,
        "machine_busy_share": pipeline.median * cpu["all"] / 1000 / CORES,
        "ratio_bound_with_free_stages": bound,
        "bare_pipeline_touches_per_second": bare_pipeline.rounds,
        "bare_pipeline_ratio": bare_ratio,
        "bare_pipeline_ratio_each_round": bare_paired,
        "pipeline_share_of_bare": pipeline.median / bare_pipeline.median,
        "offered_load": load,
        "cpu_seconds_per_1000_touches": cpu,
        "ingest_alone_cpu_seconds_per_1000_touches": ingest_cpu,
        "bare_pipeline_cpu_seconds_per_1000_touches": bare_cpu,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return [
        f"whole pipeline: {TOUCHES:,} touches over {CUSTOMERS:,} customers a round, "
        f"{TOUCHES // TOUCHES_PER_CONSENT_CHANGE:,} consent changes, every process of deploy/processes.txt",
        pipeline.line("touches/s"),
        ingest.line("touches/s"),
        f"  pipeline ratio (median pipeline / median ingest alone): {ratio:.2f}  (target >= 0.50); each round"
        f" over the ingest-alone round just before it: {', '.join(f'{r:.2f}' for r in paired)}",
        f"  machine {results['machine_busy_share']:.0%} busy in the pipeline rounds; had every process"
        f" but {', '.join(INFRASTRUCTURE)} cost nothing, the ratio would be at most {bound:.2f}",
        bare_pipeline.line("touches/s"),
        f"  bare pipeline ratio (its ceiling on this machine in this run): {bare_ratio:.2f}; each round:"
        f" {', '.join(f'{r:.2f}' for r in bare_paired)}; the pipeline moves"
        f" {results['pipeline_share_of_bare']:.0%} of the bare pipeline's rate",
        f"  offered {OFFERED_PER_SECOND:,}/s for {OFFERED_SECONDS} s (achieved {achieved:,.0f}/s): "
        f"202 -> timeline p50 {load['timeline_p50_ms']:.0f} ms, p99 {load['timeline_p99_ms']:.0f} ms; "
        f"202 -> membership p50 {load['membership_p50_ms']:.0f} ms, p99 {load['membership_p99_ms']:.0f} ms",
        "  CPU seconds per 1,000 touches (median over rounds):",
        *(f"    {name:<24} {seconds:6.3f}" for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1])),
        cpu_line("through the ingest API alone", ingest_cpu),
        cpu_line("through the bare pipeline", bare_cpu),
        f"  (written to {RESULTS.relative_to(ROOT)})",
    ]
