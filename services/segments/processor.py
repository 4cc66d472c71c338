"""The segment evaluator: a Faust agent over the allowed stream, a timer, a backfill and an outbox relay.

Every path locks the customers it evaluates in PostgreSQL, so the agent, the timer and the backfill of
any number of workers never evaluate one customer at once. The agent's batches are exactly-once through
tracking rows (see store.py); Faust's own offset commits only bound how much Kafka redelivers.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import NamedTuple, cast

import faust
from faust.types import StreamT
from prometheus_client import start_http_server
from pydantic import ValidationError

from services.segments.definitions import DefinitionsFeed
from services.segments.domain import CustomerState, Input, Outcome, decide, next_change_at, point_of, settle
from services.segments.evaluation import MICROS, Definitions
from services.segments.metrics import (
    BATCH_SIZE,
    END_TO_END_SECONDS,
    EVALUATION_SECONDS,
    EVALUATIONS,
    PUBLISHED,
    STATE_BYTES,
    STATE_CUSTOMERS,
    TIMER_LAG,
    TRANSITIONS,
    UNREADABLE,
)
from services.segments.settings import SegmentsSettings
from services.segments.store import Evaluation, PendingChange, SegmentStore
from shared.db import TRANSIENT, create_pool, until_committed
from shared.events import (
    AllowedRecord,
    AllowedTouch,
    MembershipReason,
    MembershipTransition,
    SegmentMembershipChange,
)
from shared.kafka import BrokerUnavailable, DurablePublisher, parked_headers
from shared.purposes import may_project, must_erase
from shared.serialization import decode_allowed, encode
from shared.streams import create_stream_app, raw_topic
from shared.topics import CUSTOMER_ALLOWED, SEGMENT_MEMBERSHIP, TOUCH_DLQ

log = logging.getLogger(__name__)
SETTLE_BATCH = 500
RELAY_BATCH = 2000


class Clock:
    """Wall-clock microseconds that never repeat in this process: every input gets its own instant."""

    def __init__(self) -> None:
        self.last = 0

    def now(self) -> int:
        self.last = max(time.time_ns() // 1000, self.last + 1)
        return self.last


class Received(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes


DeadLetter = Callable[[Received, str], Awaitable[None]]


class Evaluator:
    """What the agent, the timer, the backfill and the relay do, each through one store transaction."""

    def __init__(
        self, settings: SegmentsSettings, store: SegmentStore, feed: DefinitionsFeed, dead_letter: DeadLetter
    ) -> None:
        self.settings, self.store, self.feed, self.dead_letter = settings, store, feed, dead_letter
        self.clock = Clock()
        self.decided = asyncio.Event()  # wakes the relay
        self.allowed_topic = settings.topic(CUSTOMER_ALLOWED)

    async def evaluate_batch(self, records: Sequence[Received]) -> None:
        readable = []
        for record in records:
            try:
                readable.append((record, decode_allowed(record.value)))
            except ValidationError as error:
                # Only Touchline writes the allowed stream: park what it cannot read, never skip it silently.
                UNREADABLE.inc()
                await self.dead_letter(record, str(error))
        await until_committed(partial(self._evaluate_batch, readable), "segment batch")
        self.decided.set()

    async def _evaluate_batch(self, records: Sequence[tuple[Received, AllowedRecord]]) -> None:
        started = time.perf_counter()
        async with self.store.evaluation() as evaluation:
            partitions = sorted({received.partition for received, _ in records})
            applied = await evaluation.offsets(self.allowed_topic, partitions)
            inputs, received = self._inputs(
                [record for origin, record in records if origin.offset >= applied.get(origin.partition, 0)]
            )
            before = await self._lock_current(evaluation, evaluation.lock(list(inputs)))
            definitions = self.feed.definitions
            outcomes = {
                customer: decide(before.get(customer), customer, customer_inputs, definitions, self.horizon)
                for customer, customer_inputs in inputs.items()
            }
            await self._save(evaluation, before, outcomes, definitions, received, "event")
            next_offsets = {origin.partition: origin.offset + 1 for origin, _ in records}
            await evaluation.advance_offsets(self.allowed_topic, next_offsets)
        EVALUATION_SECONDS.labels("event").observe(time.perf_counter() - started)

    @property
    def horizon(self) -> int:
        return self.settings.horizon_micros

    def _inputs(self, records: Sequence[AllowedRecord]) -> tuple[dict[str, list[Input]], dict[int, datetime]]:
        """Each customer's inputs in order; and, per input instant, when its touch reached Touchline."""
        inputs: dict[str, list[Input]] = {}
        received: dict[int, datetime] = {}
        properties = self.feed.definitions.properties()
        for allowed in records:
            now = self.clock.now()
            if isinstance(allowed, AllowedTouch):
                if may_project("segments", allowed.purposes):
                    received[now] = allowed.event.received_at
                    touch = point_of(allowed.event, properties)
                    inputs.setdefault(allowed.event.customer_id, []).append(Input(now, touch))
            elif must_erase("segments", allowed.purposes):
                inputs.setdefault(allowed.customer_id, []).append(Input(now, None))
        return inputs, received

    async def _lock_current(
        self, evaluation: Evaluation, locking: Awaitable[dict[str, CustomerState]]
    ) -> dict[str, CustomerState]:
        """Locked states, once this worker knows every definition they were evaluated against."""
        states = await locking
        newest = max((state.revision for state in states.values()), default=0)
        if newest > self.feed.definitions.revision:
            await asyncio.wait_for(self.feed.reached(newest), timeout=30)
        return states

    async def _save(
        self,
        evaluation: Evaluation,
        before: dict[str, CustomerState],
        outcomes: dict[str, Outcome],
        definitions: Definitions,
        received: dict[int, datetime],
        trigger: str,
    ) -> None:
        await evaluation.save(before, outcomes, partial(next_change_at, definitions=definitions), received)
        EVALUATIONS.labels(trigger).inc(sum(outcome.evaluations for outcome in outcomes.values()))
        for outcome in outcomes.values():
            for change in outcome.changes:
                TRANSITIONS.labels(change.segment_id, change.transition.value, change.reason.value).inc()

    async def settle_due(self) -> int:
        """The timer: customers whose window slid past, evaluated without waiting for their next touch."""
        return await self._settle("timer", lambda e, now: e.lock_due(now, SETTLE_BATCH))

    async def settle_stale(self) -> int:
        """The backfill: customers not yet evaluated against the newest definitions."""
        revision = self.feed.definitions.revision
        return await self._settle("backfill", lambda e, now: e.lock_stale(revision, SETTLE_BATCH))

    async def _settle(
        self, trigger: str, locking: Callable[[Evaluation, int], Awaitable[dict[str, CustomerState]]]
    ) -> int:
        started = time.perf_counter()
        async with self.store.evaluation() as evaluation:
            now = self.clock.now()
            before = await self._lock_current(evaluation, locking(evaluation, now))
            definitions = self.feed.definitions
            if trigger == "timer":
                for state in before.values():
                    due = next_change_at(state, definitions)
                    TIMER_LAG.observe(max(0, now - (due or now)) / MICROS)
            outcomes = {customer: settle(state, definitions, now) for customer, state in before.items()}
            await self._save(evaluation, before, outcomes, definitions, {}, trigger)
        if before:
            EVALUATION_SECONDS.labels(trigger).observe(time.perf_counter() - started)
            self.decided.set()
        return len(before)

    async def relay(self, publisher: DurablePublisher) -> int:
        """Publishes decided changes to segment.membership; returns how many."""
        topic = self.settings.topic(SEGMENT_MEMBERSHIP)

        async def publish(changes: list[PendingChange]) -> None:
            await publisher.publish(topic, [(c.customer_id.encode(), encode(_wire(c))) for c in changes])
            published_at = datetime.now(UTC)
            PUBLISHED.inc(len(changes))
            for change in changes:
                if change.received_at is not None:
                    END_TO_END_SECONDS.observe(max(0.0, (published_at - change.received_at).total_seconds()))

        return await self.store.publish_pending(publish, RELAY_BATCH)


def _wire(change: PendingChange) -> SegmentMembershipChange:
    return SegmentMembershipChange(
        change_id=change.change_id,
        segment_id=change.segment_id,
        segment_version=change.version,
        customer_id=change.customer_id,
        transition=MembershipTransition(change.transition),
        at=change.at,
        reason=MembershipReason(change.reason),
    )


async def repeat(work: Callable[[], Awaitable[int]], what: str, full: int) -> None:
    """Runs `work` until it returns less than a full batch, riding out failures.

    The timer, the backfill and the relay take their work from PostgreSQL, so a failed attempt leaves
    it there for the next one: retrying loses nothing, while letting the error end the task would stop
    exits, backfills or publishing for good in a worker that otherwise looks alive.
    """
    backoff = 0.1
    while True:
        try:
            if await work() < full:
                return
            backoff = 0.1
        except (*TRANSIENT, BrokerUnavailable) as error:
            log.warning("segment work failed; retrying", extra={"what": what, "error": repr(error)})
        except Exception:
            log.exception("segment work failed unexpectedly; retrying", extra={"what": what})
        else:
            continue
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 5.0)


async def wake_on(event: asyncio.Event, seconds: float) -> None:
    """Returns when `event` is set, or after `seconds`; clears it either way."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    event.clear()


async def _every(seconds: float, work: Callable[[], Awaitable[int]], what: str, full: int) -> None:
    while True:
        await repeat(work, what, full)
        await asyncio.sleep(seconds)


async def _on(event: asyncio.Event, work: Callable[[], Awaitable[int]], what: str, full: int) -> None:
    while True:
        await wake_on(event, 1.0)  # also on a timeout: work a failed attempt left behind
        await repeat(work, what, full)


async def _measure_state(store: SegmentStore) -> None:
    while True:
        try:
            customers, size = await store.state_size()
            STATE_CUSTOMERS.set(customers)
            STATE_BYTES.set(size)
        except TRANSIENT as error:
            log.warning("could not measure segment state", extra={"error": repr(error)})
        await asyncio.sleep(15.0)


async def _park(dead_letters: faust.TopicT, source: str, record: Received, error: str) -> None:
    headers = parked_headers(error, f"{source}/{record.partition}/{record.offset}")
    await dead_letters.send(key=record.key, value=record.value, headers=headers)


def create_processor(settings: SegmentsSettings) -> faust.App:
    app = create_stream_app(settings, "segments")
    allowed = raw_topic(app, settings, CUSTOMER_ALLOWED)
    dead_letters = raw_topic(app, settings, TOUCH_DLQ)
    feed = DefinitionsFeed()
    evaluators: list[Evaluator] = []  # set once the definitions are loaded; the agent waits for it
    ready = asyncio.Event()

    @app.task
    async def run_evaluator() -> None:
        pool = await create_pool(settings.pg_dsn.get_secret_value(), max_size=4)
        publisher = DurablePublisher(settings, settings.segments_publish_timeout_seconds)
        store = SegmentStore(pool)
        evaluator = Evaluator(
            settings, store, feed, partial(_park, dead_letters, settings.topic(CUSTOMER_ALLOWED))
        )
        following = asyncio.create_task(feed.follow(settings))
        try:
            await feed.loaded.wait()
            evaluators.append(evaluator)
            ready.set()
            interval = settings.segments_timer_interval_seconds
            await asyncio.gather(
                following,
                _every(interval, evaluator.settle_due, "timer", SETTLE_BATCH),
                _on(feed.changed, evaluator.settle_stale, "backfill", SETTLE_BATCH),
                _on(evaluator.decided, partial(evaluator.relay, publisher), "relay", RELAY_BATCH),
                _measure_state(store),
            )
        finally:
            following.cancel()
            await publisher.close()
            await pool.close()

    @app.agent(allowed)
    async def evaluate(stream: StreamT[bytes]) -> None:
        await ready.wait()
        batches = cast(faust.Stream[bytes], stream).take_events(
            settings.segments_batch_max, settings.segments_batch_seconds
        )
        async for events in batches:
            records = [
                Received(e.message.partition, e.message.offset, e.message.key, e.message.value or b"")
                for e in events
            ]
            BATCH_SIZE.observe(len(records))
            await evaluators[0].evaluate_batch(records)

    @app.task
    async def expose_metrics() -> None:
        start_http_server(settings.segments_worker_metrics_port, addr=settings.segments_host)

    return app
