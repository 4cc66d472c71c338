"""The whole pipeline under a steady load with one fault injected, and the accounting that follows.

Every process of deploy/processes.txt runs on the run's own topics and database. A steady load of
touches goes through the ingest API, with consent changes and erasures through the consent API, as
clients send them (a 503 is retried, as the README tells clients). Mid-load, a scenario injects its
fault. Once the load has ended, a sentinel touch per partition marks the end: every stage keeps order
per partition, so when they have all reached the timeline and segment.membership, so has everything.

The checker then derives from the customer log what every projection must hold, and compares:
- lost: touches acknowledged with 202 that are not in the customer log, and touches the log says the
  timeline must hold that it does not;
- doubled: a profile counting more touches than it holds, a touch on the allowed stream more often
  than in the customer log, or a membership transition repeated (after dedup on change_id);
- violations: timeline rows the consent log forbids (G1/G2), members of a segment whose touches
  segments may not use;
- valid records parked: anything on touch.dlq that this run did not inject as poison.
"""

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.demo import customer_journey
from shared.events import ConsentChange, MembershipTransition, SegmentMembershipChange, TouchEvent
from shared.kafka import BrokerUnavailable, DurablePublisher
from shared.serialization import decode, decode_allowed, decode_customer_log
from shared.settings import TouchlineSettings
from shared.topics import (
    CUSTOMER_ALLOWED,
    CUSTOMER_LOG,
    IDENTITY_INBOUND,
    SEGMENT_MEMBERSHIP,
    TOUCH_DLQ,
    TOUCH_INBOUND,
    TopicSpec,
)
from tests.bench.pipeline import Clients, one_per_partition, request, touch
from tests.bench.stack import Stack
from tests.consent_model import expected_holdings

DEFAULTS = TouchlineSettings().default_consent()
BATCH = 20
CUSTOMERS = 2000
TOUCHES_PER_CONSENT_CHANGE = 25
INBOUND_EVERY = 10
# One batch in IDENTIFIED_EVERY also names each customer's email: it goes through identity resolution.
IDENTIFIED_EVERY = 4


@dataclass(frozen=True)
class Load:
    touches_per_second: int
    seconds: float

    @classmethod
    def from_environment(cls, full: bool) -> "Load":
        """`make faults` offers 1,000 touches/s for 60 s; the short form in `make test` less, for less."""
        rate = os.environ.get("TOUCHLINE_FAULTS_RATE", "1000" if full else "300")
        seconds = os.environ.get("TOUCHLINE_FAULTS_SECONDS", "60" if full else "20")
        return cls(int(rate), float(seconds))


@dataclass
class Offered:
    """What the clients sent and what the APIs acknowledged."""

    touches: int = 0
    acknowledged: dict[str, str] = field(default_factory=dict)  # event id -> customer
    consent_changes: int = 0
    poison: int = 0  # records injected straight onto topics, every one carrying POISON_MARK


# In the id of every poison record a scenario injects: whatever a stage makes of them (parked, or kept
# as an odd but storable touch) is left out of the accounting of the valid load.
POISON_MARK = b"rogue-poison-"


def injected(value: bytes | None) -> bool:
    return POISON_MARK in (value or b"")


@dataclass
class Accounting:
    scenario: str
    offered: int
    acknowledged: int
    stored: int
    lost: int
    doubled: int
    violations: int
    valid_parked: int
    recovery_seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def row(self) -> str:
        return (
            f"| {self.scenario} | {self.offered:,} | {self.stored:,} | {self.lost} | {self.doubled} |"
            f" {self.violations} | {self.valid_parked} | {self.recovery_seconds:.1f} |"
        )


def _journeys(seed: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    journeys = [
        iter(customer_journey(f"f{seed}-{number:05d}", now, weeks=2, seed=seed))
        for number in range(CUSTOMERS)
    ]
    touches: list[dict[str, Any]] = []
    while journeys:
        alive = []
        for journey in journeys:
            event = next(journey, None)
            if event is not None:
                touches.append(event.model_dump(mode="json"))
                alive.append(journey)
        journeys = alive
    return touches


def _consent_change(rng: random.Random, customer: str) -> bytes:
    """Mostly marketing opt-ins and opt-outs, some profiling opt-outs (which delete a timeline), a few
    erasures: what a preference centre and a data protection office send."""
    draw = rng.random()
    if draw < 0.05:
        return request("POST", f"/v1/customers/{customer}/erasure")
    purpose = "profiling" if draw < 0.15 else "marketing"
    status = "granted" if rng.random() < 0.7 else "denied"
    return request("PUT", f"/v1/customers/{customer}/consent/{purpose}", orjson.dumps({"status": status}))


async def steady_load(
    stack: Stack, settings: TouchlineSettings, load: Load, offered: Offered, seed: int
) -> None:
    """`load.touches_per_second` in batches of BATCH for `load.seconds`, consent changes beside them;
    one batch in INBOUND_EVERY goes the Kafka-native way, through touch.inbound and the ingest worker,
    and one in IDENTIFIED_EVERY names identities, so the identity resolver carries it."""
    touches, rng = _journeys(seed), random.Random(seed)
    ingest = await Clients.connect(stack.ports["ingest"])
    consent = await Clients.connect(stack.ports["consent"], 2)
    producer = DurablePublisher(settings, timeout_seconds=10)
    interval = BATCH / load.touches_per_second
    pending: list[asyncio.Task[None]] = []

    async def post(number: int, batch: list[dict[str, Any]]) -> None:
        if number % IDENTIFIED_EVERY == 1:
            named = [e | {"identities": {"email": f"{e['customer_id']}@faults.example"}} for e in batch]
            await ingest.send(request("POST", "/v1/events", orjson.dumps(named)))
        elif number % INBOUND_EVERY:
            await ingest.send(request("POST", "/v1/events", orjson.dumps(batch)))
        else:
            await produce_until_acknowledged(producer, settings.topic(TOUCH_INBOUND), batch)
        offered.acknowledged.update((event["event_id"], event["customer_id"]) for event in batch)

    async def change(raw: bytes) -> None:
        await consent.send(raw)

    started = time.perf_counter()
    try:
        for number in range(int(load.seconds / interval)):
            await asyncio.sleep(max(0.0, started + number * interval - time.perf_counter()))
            batch = touches[(number * BATCH) % len(touches) :][:BATCH]
            batch = [{**event, "event_id": f"s{seed}-{number}-{index}"} for index, event in enumerate(batch)]
            offered.touches += len(batch)
            pending.append(asyncio.create_task(post(number, batch)))
            for event in batch:
                if rng.random() < 1 / TOUCHES_PER_CONSENT_CHANGE:
                    offered.consent_changes += 1
                    pending.append(asyncio.create_task(change(_consent_change(rng, event["customer_id"]))))
            for task in [task for task in pending if task.done()]:
                task.result()  # a request that failed fails the run
            pending = [task for task in pending if not task.done()]
        await asyncio.gather(*pending)
    finally:
        await ingest.close()
        await consent.close()
        await producer.close()


async def produce_until_acknowledged(
    producer: DurablePublisher, topic: str, batch: list[dict[str, Any]]
) -> None:
    """As a channel system producing to touch.inbound would: a batch the broker did not acknowledge
    (it is restarting, its partitions have no leader yet) is sent again, until it is, through the
    publisher the APIs use (it replaces a producer whose idempotence state a restarted broker refuses).
    Counted as offered only once acknowledged; a resent touch the broker had kept after all is
    deduplicated downstream."""
    records = [(e["customer_id"].encode(), orjson.dumps(e)) for e in batch]
    deadline = time.monotonic() + 120
    while True:
        try:
            await producer.publish(topic, records)
            return
        except BrokerUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)


def sentinels(name: str) -> list[str]:
    return one_per_partition(f"sentinel-{name}")


async def delivered(stack: Stack, dsn: str, name: str, timeout: float) -> None:
    """Posts a sentinel touch per partition; returns once all are in the timeline and their entries to
    the sentinel segment published (the relay publishes in order, so everything before them is too).
    Sentinels name an identity, so they follow every touch before them through the identity resolver
    as well as past it: the resolver publishes in its one order, after what ingest logged directly."""
    customers = sentinels(name)
    now = datetime.now(UTC)
    ingest = await Clients.connect(stack.ports["ingest"], 2)
    started = time.perf_counter()
    try:
        await ingest.send_all(
            [
                request(
                    "POST", "/v1/events", orjson.dumps([touch(f"{c}-s", c, "bench.sentinel", now) | named])
                )
                for c in customers
                for named in [{"identities": {"anonymous_id": f"{c}-sentinel"}}]
            ]
        )
    finally:
        await ingest.close()
    deadline = started + timeout
    connection = await asyncpg.connect(dsn)
    try:
        while True:
            in_timeline = await _in_timeline(connection, customers)
            published = await connection.fetchval(
                "SELECT count(*) FROM segment_changes WHERE segment_id = 'bench-sentinel'"
                " AND customer_id = ANY($1) AND published",
                customers,
            )
            if in_timeline == len(customers) and published == len(customers):
                return
            if time.perf_counter() > deadline:
                raise TimeoutError(f"sentinels {name}: {in_timeline} in the timeline, {published} published")
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def _in_timeline(connection: asyncpg.Connection, customers: list[str]) -> int:
    generation = await connection.fetchval("SELECT generation FROM timeline_active")
    count: int = await connection.fetchval(
        f"SELECT count(DISTINCT customer_id) FROM {generation}.events WHERE customer_id = ANY($1)", customers
    )
    return count


async def read_topic(settings: TouchlineSettings, spec: TopicSpec) -> list[Any]:
    """Every committed record of the topic, from the beginning to its end now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topic(spec), p) for p in range(spec.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        behind = set(partitions)
        while behind:
            behind = {tp for tp in behind if await consumer.position(tp) < ends[tp]}
            for tp, batch in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).items():
                records += [record for record in batch if record.offset < ends[tp]]
        return records
    finally:
        await consumer.stop()


async def account(
    scenario: str, settings: TouchlineSettings, dsn: str, offered: Offered, recovery_seconds: float
) -> Accounting:
    connection = await asyncpg.connect(dsn)
    try:
        # Before the topic is read: every change published by now must be on it.
        published = {
            row[0] for row in await connection.fetch("SELECT change_id FROM segment_changes WHERE published")
        }
    finally:
        await connection.close()
    log_records = [
        record
        for raw in await read_topic(settings, CUSTOMER_LOG)
        if not injected(raw.value)
        for record in [decode_customer_log(raw.value)]
    ]
    touches_logged = Counter(r.event_id for r in log_records if isinstance(r, TouchEvent))
    # Resolved touches are published in Kafka transactions: each as often as it reached identity.inbound
    # (a client's retry after a 503 may send it twice; projections deduplicate), whatever the resolver
    # went through.
    resolved = Counter(r.event_id for r in log_records if isinstance(r, TouchEvent) and r.identities)
    inbound = Counter(
        orjson.loads(r.value)["event_id"]
        for r in await read_topic(settings, IDENTITY_INBOUND)
        if not injected(r.value) and orjson.loads(r.value).get("kind") == "identified"
    )
    resolver_doubled = [event for event, times in resolved.items() if times > inbound[event]]
    allowed = [
        decode_allowed(r.value) for r in await read_topic(settings, CUSTOMER_ALLOWED) if not injected(r.value)
    ]
    allowed_touches = Counter(r.event.event_id for r in allowed if r.kind == "allowed")
    membership = [
        decode(SegmentMembershipChange, r.value) for r in await read_topic(settings, SEGMENT_MEMBERSHIP)
    ]
    parked = await read_topic(settings, TOUCH_DLQ)

    timeline_expected = expected_holdings(log_records, "timeline", DEFAULTS)
    segments_allowed = expected_holdings(log_records, "segments", DEFAULTS)
    connection = await asyncpg.connect(dsn)
    try:
        generation = await connection.fetchval("SELECT generation FROM timeline_active")
        rows = await connection.fetch(f"SELECT customer_id, event_id FROM {generation}.events")
        counts = await connection.fetch(f"SELECT customer_id, event_count FROM {generation}.profiles")
        members = await connection.fetch("SELECT segment_id, customer_id FROM segment_members")
        outbox = {row[0] for row in await connection.fetch("SELECT change_id FROM segment_changes")}
    finally:
        await connection.close()
    stored: dict[str, set[str]] = {}
    for row in rows:
        if not injected(row["customer_id"].encode()):
            stored.setdefault(row["customer_id"], set()).add(row["event_id"])

    ingest_lost = [event for event in offered.acknowledged if event not in touches_logged]
    expected_pairs = {(c, e) for c, events in timeline_expected.items() for e in events}
    stored_pairs = {(c, e) for c, events in stored.items() for e in events}
    timeline_lost = expected_pairs - stored_pairs
    forbidden = stored_pairs - expected_pairs
    overcounted = [
        row["customer_id"] for row in counts if row["event_count"] > len(stored.get(row["customer_id"], ()))
    ]
    allowed_doubled = [event for event, times in allowed_touches.items() if times > touches_logged[event]]
    transitions_doubled, transitions_missing = _membership_sequences(membership)
    on_topic = {change.change_id for change in membership}
    unpublished = published - on_topic  # the outbox says published, the topic does not have it
    # On the topic, never decided; an erased customer's changes leave the outbox once published.
    erased = {r.customer_id for r in log_records if isinstance(r, ConsentChange) and r.erasure}
    spurious = {c.change_id for c in membership if c.change_id not in outbox and c.customer_id not in erased}
    members_forbidden = [
        (row["segment_id"], row["customer_id"])
        for row in members
        if row["customer_id"] not in segments_allowed
    ]
    valid_parked = [record for record in parked if not injected(record.value)]
    return Accounting(
        scenario=scenario,
        offered=offered.touches,
        acknowledged=len(offered.acknowledged),
        stored=len(stored_pairs),
        lost=len(ingest_lost) + len(timeline_lost) + transitions_missing + len(unpublished),
        doubled=len(overcounted)
        + len(allowed_doubled)
        + transitions_doubled
        + len(spurious)
        + len(resolver_doubled),
        violations=len(forbidden) + len(members_forbidden),
        valid_parked=len(valid_parked),
        recovery_seconds=recovery_seconds,
        details={
            "ingest_lost": ingest_lost[:5],
            "timeline_lost": sorted(timeline_lost)[:5],
            "timeline_forbidden": sorted(forbidden)[:5],
            "profiles_overcounted": overcounted[:5],
            "allowed_doubled": allowed_doubled[:5],
            "resolver_doubled": resolver_doubled[:5],
            "resolved": len(resolved),
            "transitions_doubled": transitions_doubled,
            "transitions_missing": transitions_missing,
            "changes_unpublished": sorted(unpublished)[:5],
            "changes_spurious": sorted(spurious)[:5],
            "members_forbidden": members_forbidden[:5],
            "valid_parked": [dict(record.headers) for record in valid_parked[:3]],
            "consent_changes": offered.consent_changes,
            "membership_changes": len(membership),
            "parked": len(parked),
        },
    )


def _membership_sequences(changes: list[SegmentMembershipChange]) -> tuple[int, int]:
    """Repeated and missing transitions per (segment, customer) after dedup on change_id.

    Entered and exited must alternate, starting with entered: two entries in a row mean an exit was lost
    or an entry doubled; either way the stream no longer tells a campaign tool the truth.
    """
    seen: set[str] = set()
    state: dict[tuple[str, str], bool] = {}
    doubled = missing = 0
    for change in changes:
        if change.change_id in seen:
            continue
        seen.add(change.change_id)
        pair = (change.segment_id, change.customer_id)
        entering = change.transition is MembershipTransition.ENTERED
        if state.get(pair, False) == entering:
            if entering:
                doubled += 1
            else:
                missing += 1
        state[pair] = entering
    return doubled, missing


Fault = Callable[[Stack], Awaitable[None]]


async def run_scenario(
    scenario: str,
    stack: Stack,
    settings: TouchlineSettings,
    dsn: str,
    load: Load,
    fault: Fault,
    inject: Callable[[Offered], Awaitable[None]] | None = None,
) -> Accounting:
    """The load, the fault a third of the way in, then the sentinels and the accounting."""
    offered = Offered()
    loading = asyncio.create_task(steady_load(stack, settings, load, offered, random.randrange(1_000_000)))
    try:
        await asyncio.sleep(load.seconds / 3)
        if inject is not None:
            await inject(offered)
        faulted_at = time.perf_counter()
        await fault(stack)
        await delivered(stack, dsn, f"{scenario}-recovery", timeout=300)
        recovery = time.perf_counter() - faulted_at
        await loading
    finally:
        loading.cancel()
    await delivered(stack, dsn, f"{scenario}-end", timeout=600)
    return await account(scenario, settings, dsn, offered, recovery)


def record_result(accounting: Accounting, path: Path) -> None:
    """Adds (or replaces) the scenario's row in the table the README quotes, keeping the other rows, so
    one scenario can be rerun alone."""
    header = (
        "| scenario | touches offered | stored | lost | doubled | violations | valid parked | recovery s |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    rows = {}
    if path.exists():
        for line in path.read_text().splitlines()[2:]:
            rows[line.split("|")[1].strip()] = line
    rows[accounting.scenario] = accounting.row()
    path.write_text(header + "\n".join(rows.values()) + "\n")
