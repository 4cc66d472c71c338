"""Segments against history length: the cost of one new touch for a customer with 10, 1,000 and 100,000
touches kept, with the twenty benchmark segments, through the evaluator's real store.

Three figures per length: the domain alone (decide one touch on the cached digest); one evaluator
transaction (lock, decide, save: what a batch of one costs); the bytes that transaction writes for the
digest, against the bytes a whole-digest rewrite (the design before segment_points) would write. A cold
start (the digest read from PostgreSQL, not the cache) is timed once per length.
"""

import random
import statistics
import time
from datetime import UTC, datetime

from services.segments.domain import Input, decide, next_change_at
from services.segments.evaluation import MICROS, Definitions, Point, fingerprint, with_definition
from services.segments.evaluation_store import EvaluationStore, encode_points
from shared.db import create_pool
from shared.rules import Scalar, SegmentDefinition
from tests.bench.common import bench_database
from tests.bench.segments import KINDS, twenty_segments

LENGTHS = (10, 1_000, 100_000)
TOUCHES_TIMED = 300
HORIZON = 400 * 86_400 * MICROS
SPAN = 300 * 86_400 * MICROS  # the history is spread over the last 300 days


def definitions() -> Definitions:
    registry = Definitions()
    for offset, rule in enumerate(twenty_segments()):
        record = SegmentDefinition.model_validate(
            {
                "segment_id": f"s{offset}",
                "version": 1,
                "name": f"s{offset}",
                "rule": rule,
                "changed_at": datetime.now(UTC),
            }
        )
        registry = with_definition(registry, record, offset)
    return registry


def touch(rng: random.Random, number: int, at: int) -> Point:
    kind, channel = rng.choice(KINDS)
    values: dict[str, Scalar] = {
        "amount": round(rng.uniform(5, 300), 2),
        "path": rng.choice(["/", "/sale", "/cart"]),
    }
    return Point(at, fingerprint(f"h-{number}"), kind, channel, values)


def history(length: int, now: int) -> list[Point]:
    rng = random.Random(length)
    return [touch(rng, number, now - SPAN + number * SPAN // length) for number in range(length)]


async def stored_bytes(store: EvaluationStore, customer: str) -> tuple[int, int]:
    """The customer row's recent touches, and all their rows of older touches, in bytes."""
    row = await store.pool.fetchrow(
        "SELECT length(recent), (SELECT coalesce(sum(length(points)), 0) FROM segment_points"
        " WHERE customer_id = $1) FROM segment_customers WHERE customer_id = $1",
        customer,
    )
    assert row is not None
    return int(row[0]), int(row[1])


def median_micros(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


async def run_length(store: EvaluationStore, registry: Definitions, length: int) -> str:
    customer, rng = f"history-{length}", random.Random(-length)
    now = time.time_ns() // 1000
    async with store.evaluation() as evaluation:
        start = decide(None, customer, [Input(now, touch(rng, -1, now))], registry, HORIZON)
        assert start.state is not None
        for point in history(length, now):
            start.state.points.add(point, now - HORIZON)
        await evaluation.save({}, {customer: start}, lambda s: next_change_at(s, registry), {})
    cached = start.state.points
    domain, transaction, written, whole = [], [], [], [len(encode_points(cached.points))]
    _, older = await stored_bytes(store, customer)
    for number in range(TOUCHES_TIMED):
        now += MICROS
        inputs = [Input(now, touch(rng, length + number, now))]
        async with store.evaluation() as evaluation:
            began = time.perf_counter()
            before = await evaluation.lock([customer], lambda _customer, _epoch: cached)
            decided = time.perf_counter()
            outcome = decide(before[customer], customer, inputs, registry, HORIZON)
            domain.append(time.perf_counter() - decided)
            await evaluation.save(before, {customer: outcome}, lambda s: next_change_at(s, registry), {})
        transaction.append(time.perf_counter() - began)
        # Nothing expires here (300 days of history, 400 kept): older rows only grow, by what moved out.
        recent, now_older = await stored_bytes(store, customer)
        written.append(recent + now_older - older)
        older = now_older
        # The whole digest's encoding grows by each touch's own, and a comma.
        whole.append(whole[-1] + len(encode_points([inputs[0].touch] if inputs[0].touch else [])) - 1)
    began = time.perf_counter()
    async with store.evaluation() as evaluation:
        loaded = await evaluation.lock([customer], lambda _customer, _epoch: None)
    cold = time.perf_counter() - began
    assert len(loaded[customer].points) == len(cached)
    return (
        f"  {length:>7,} touches kept: domain {median_micros(domain):7.1f} us, transaction"
        f" {median_micros(transaction):7.1f} us per touch; digest bytes written per touch: mean"
        f" {statistics.mean(written):,.0f}, max {max(written):,} (a whole-digest rewrite:"
        f" {statistics.mean(whole):,.0f}); cold read {cold * 1000:.0f} ms"
    )


async def run(_: object) -> list[str]:
    registry = definitions()
    async with bench_database() as dsn:
        pool = await create_pool(dsn)
        try:
            store = EvaluationStore(pool)
            lines = [await run_length(store, registry, length) for length in LENGTHS]
        finally:
            await pool.close()
    return [
        f"segments history: one new touch, 20 segments, medians over {TOUCHES_TIMED} touches",
        *lines,
    ]
