"""The evaluation step of the segment evaluator: a batch of the allowed stream, the timer, the backfill
and the outbox relay, each through one store transaction.

Every path locks the customers it evaluates in PostgreSQL, so the batch loop, the timer and the
backfill of any number of workers never evaluate one customer at once. Batches are exactly-once through
tracking rows (see store.py): records Kafka redelivers below them are skipped.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from itertools import groupby

from aiokafka import ConsumerRecord

from services.segments.cache import DigestCache
from services.segments.definitions import DefinitionsFeed
from services.segments.domain import (
    AllowedItem,
    CustomerState,
    Item,
    MergeNotice,
    Outcome,
    SplitNotice,
    decide,
    inputs_of,
    item_of,
    next_change_at,
    on_merge,
    on_split,
    parse_allowed,
    settle,
)
from services.segments.evaluation import MICROS, Definitions
from services.segments.evaluation_store import Evaluation, EvaluationStore
from services.segments.metrics import (
    END_TO_END_SECONDS,
    EVALUATION_SECONDS,
    EVALUATIONS,
    PUBLISHED,
    TIMER_LAG,
    TRANSITIONS,
    UNREADABLE,
    UNSTORABLE,
)
from services.segments.outbox import ChangeOutbox, PendingChange
from services.segments.settings import SegmentsSettings
from shared.events import MembershipReason, MembershipTransition, SegmentMembershipChange
from shared.failures import Failure, classify, isolating
from shared.kafka import DurablePublisher
from shared.serialization import encode, read_allowed
from shared.topics import CUSTOMER_ALLOWED, SEGMENT_MEMBERSHIP

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


DeadLetter = Callable[["ConsumerRecord[bytes, bytes]", str], Awaitable[None]]


class Evaluator:
    """What the agent, the timer, the backfill and the relay do, each through one store transaction."""

    def __init__(
        self,
        settings: SegmentsSettings,
        stores: tuple[EvaluationStore, ChangeOutbox],
        feed: DefinitionsFeed,
        dead_letter: DeadLetter,
    ) -> None:
        self.settings, (self.store, self.outbox), self.feed = settings, stores, feed
        self.dead_letter = dead_letter
        self.cache = DigestCache(settings.segments_cache_touches)
        self.clock = Clock()
        self.decided = asyncio.Event()  # wakes the relay
        self.allowed_topic = settings.topic(CUSTOMER_ALLOWED)

    async def evaluate_batch(self, records: Sequence["ConsumerRecord[bytes, bytes]"]) -> None:
        readable = []
        properties = self.feed.definitions.properties()
        for record in records:
            item = read_allowed(
                record.value or b"",
                partial(parse_allowed, properties=properties),
                partial(item_of, properties=properties),
            )
            if isinstance(item, str):
                # Only Touchline writes the allowed stream: park what it cannot read, never skip it silently.
                UNREADABLE.inc()
                await self.dead_letter(record, item)
            else:
                readable.append((record, item))
        if readable:
            await isolating(readable, self._evaluate_batch, self._park, "segment batch")
        self.decided.set()

    async def _park(
        self,
        unstorable: tuple["ConsumerRecord[bytes, bytes]", Item],
        error: BaseException,
    ) -> None:
        UNSTORABLE.inc()
        await self.dead_letter(unstorable[0], repr(error))

    async def _evaluate_batch(self, readable: Sequence[tuple["ConsumerRecord[bytes, bytes]", Item]]) -> int:
        """Evaluates a batch (or, while isolating a data error, part of one) in one transaction.

        A part holds a prefix or a suffix of each partition's records, so tracking offsets only advance.
        """
        started = time.perf_counter()
        records = [record for record, _ in readable]
        partition_of = {item.customer_id: record.partition for record, item in readable}
        try:
            async with self.store.evaluation() as evaluation:
                outcomes = await self._decide_batch(evaluation, readable)
                next_offsets = {record.partition: record.offset + 1 for record in records}
                await evaluation.advance_offsets(self.allowed_topic, next_offsets)
        except BaseException:
            self.cache.drop(partition_of)  # their digests may hold touches that were never stored
            raise
        for customer, outcome in outcomes.items():
            if outcome is None or outcome.state is None:
                self.cache.drop([customer])
            else:
                epoch = evaluation.epochs.get(customer, 0)
                self.cache.keep(customer, partition_of[customer], outcome.state.points, epoch)
        EVALUATION_SECONDS.labels("event").observe(time.perf_counter() - started)
        return len(readable)

    async def _decide_batch(
        self,
        evaluation: Evaluation,
        readable: Sequence[tuple["ConsumerRecord[bytes, bytes]", Item]],
    ) -> dict[str, Outcome | None]:
        """The batch's records in order, each run of touches decided together and each merge on its own;
        the last outcome per customer (None: not to be cached)."""
        partitions = sorted({record.partition for record, _ in readable})
        applied = await evaluation.offsets(self.allowed_topic, partitions)
        fresh = [item for origin, item in readable if origin.offset >= applied.get(origin.partition, 0)]
        outcomes: dict[str, Outcome | None] = {}
        for is_notice, run in groupby(fresh, key=lambda item: not isinstance(item, AllowedItem)):
            if is_notice:
                for notice in run:
                    if isinstance(notice, MergeNotice):
                        outcomes |= dict.fromkeys(await self._merge(evaluation, notice))
                    elif isinstance(notice, SplitNotice):
                        outcomes[notice.customer_id] = await self._split(evaluation, notice)
            else:
                outcomes |= await self._decide_run(evaluation, [i for i in run if isinstance(i, AllowedItem)])
        return outcomes

    async def _decide_run(self, evaluation: Evaluation, items: Sequence[AllowedItem]) -> dict[str, Outcome]:
        inputs = inputs_of(items, self.clock.now)
        customers = list(inputs.per_customer)
        before = await self._lock_current(evaluation, evaluation.lock(customers, self.cache.get))
        definitions = self.feed.definitions
        outcomes = {
            customer: decide(before.get(customer), customer, customer_inputs, definitions, self.horizon)
            for customer, customer_inputs in inputs.per_customer.items()
        }
        await self._save(evaluation, before, outcomes, definitions, inputs.received, "event")
        await evaluation.erase_history(inputs.erased)
        return outcomes

    async def _merge(self, evaluation: Evaluation, notice: MergeNotice) -> list[str]:
        """One side of an identity merge; when it is the second, the merge, into the profile holding the
        survivor now. Returns the profiles it wrote."""
        due = await evaluation.merge_side(notice)
        if due is None:
            return []
        holder, allowed = await evaluation.holder(due.survivor)
        if holder == due.absorbed:
            return []
        merge = due._replace(survivor=holder, allowed=due.allowed and allowed)
        # Read from the database, never the cache: the holder may be another worker's to cache.
        before = await self._lock_current(evaluation, evaluation.lock([due.absorbed, holder], _unknown))
        definitions, now = self.feed.definitions, self.clock.now()
        leaving, joined = on_merge(
            before.get(due.absorbed), before.get(holder), merge, definitions, now, self.horizon
        )
        await self._save(
            evaluation, before, {due.absorbed: leaving, holder: joined}, definitions, {}, "merge"
        )
        await evaluation.merged(due.absorbed, holder)
        return [due.absorbed, holder]

    async def _split(self, evaluation: Evaluation, notice: SplitNotice) -> Outcome:
        before = await self._lock_current(evaluation, evaluation.lock([notice.customer_id], self.cache.get))
        definitions = self.feed.definitions
        outcome = on_split(before.get(notice.customer_id), notice.keys, definitions, self.clock.now())
        await self._save(evaluation, before, {notice.customer_id: outcome}, definitions, {}, "split")
        await evaluation.unmerged(notice.split_off)
        return outcome

    @property
    def horizon(self) -> int:
        return self.settings.horizon_micros

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
        return await self._settle("timer", lambda e, now: e.lock_due(now, SETTLE_BATCH, self.cache.get))

    async def settle_stale(self) -> int:
        """The backfill: customers not yet evaluated against the newest definitions."""
        revision = self.feed.definitions.revision
        return await self._settle(
            "backfill", lambda e, now: e.lock_stale(revision, SETTLE_BATCH, self.cache.get)
        )

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

        return await self.outbox.publish_pending(publish, RELAY_BATCH)


def _unknown(customer_id: str, epoch: int) -> None:
    return None


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
        except Exception as error:
            # Anything but UNAVAILABLE is a bug here (no record to park): it ends the process, loudly,
            # rather than leaving a task that looks alive.
            if classify(error) is not Failure.UNAVAILABLE:
                raise
            log.warning("segment work failed; retrying", extra={"what": what, "error": repr(error)})
        else:
            continue
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 5.0)


async def wake_on(event: asyncio.Event, seconds: float) -> None:
    """Returns when `event` is set, or after `seconds`; clears it either way."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    event.clear()
