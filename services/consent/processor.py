"""The consent filter: the customer log in, the allowed stream out, exactly once, one batch per poll.

A plain aiokafka loop rather than a Faust agent: event by event, Faust held the filter at 500-900
decisions/s while it waited on one produce and one audit write at a time. Here each poll is one batch:
decoded, decided by the pure domain, its consent changes audited in one PostgreSQL statement, and each
input partition's outputs and next offset committed in one Kafka transaction (shared/transactions.py).
The transactions commit in the background: while one partition's commit waits on the broker, the next
poll reads and decides the other partitions. A partition is not read again until its commit is done, so
each partition still moves one batch at a time, in order.

State: a customer's recent consent changes with their log offsets. Its durable form is the audit trail
in PostgreSQL, written before the Kafka transaction commits; in memory the filter keeps the states of the
customers it has seen on its partitions, read from PostgreSQL on first sight. Starting needs no replay.

At every crash point (SIGKILL included):
- before the audit write commits: nothing of the batch is anywhere; Kafka redelivers it from the
  group's committed offset.
- after the audit write, before the Kafka transaction commits: the audit rows are kept (a replay writes
  them again and ON CONFLICT (change_id) ignores them); the open transaction is aborted when the
  partition's next owner starts its producer under the same transactional id, so no read_committed
  consumer ever sees its outputs or parked records; the batch is redelivered. The state read back now
  holds the batch's own changes, but each touch is judged by the changes logged before its own offset,
  so the replay decides exactly as the first pass did (G3).
- after the Kafka transaction commits: outputs, parked records and the offset are all committed.
A partition moved by a rebalance mid-batch: the revocation waits for every batch in hand to commit; a
worker fenced off (it lost the partition while frozen) drops its batch and the partition's states. A
worker stopped with commits in flight abandons them, as a crash would.
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from prometheus_client import start_http_server
from pydantic import ValidationError

from services.consent.domain import (
    ConsentState,
    Defaults,
    ForwardedTouch,
    LogItem,
    Output,
    filter_batch,
    read_logged,
)
from services.consent.metrics import (
    BATCH_SIZE,
    CARRIED_OVER,
    CHANGES,
    DECISIONS,
    DROPPED,
    ERASE_MARKERS,
    FILTER_LAG,
    UNREADABLE,
)
from services.consent.settings import ConsentSettings
from services.consent.store import ConsentStore
from shared.db import create_pool
from shared.events import AllowedTouch, ConsentChange, ProfileAbsorbed, ProfileMerged, ProfileSplit, Purpose
from shared.failures import while_unavailable
from shared.kafka import origin_of, parked_headers, poll_batch
from shared.serialization import encode
from shared.streams import create_batch_consumer, group_id
from shared.topics import CUSTOMER_ALLOWED, CUSTOMER_LOG, TOUCH_DLQ
from shared.transactions import Parked, PartitionFenced, PartitionTransactions

log = logging.getLogger(__name__)
STAGE = "consent-filter"
# Customers whose state is kept in memory; past this the cache starts afresh (PostgreSQL holds it all).
CACHED_CUSTOMERS = 500_000


@dataclass
class PartitionBatch:
    """One input partition's share of a poll, decoded."""

    source: TopicPartition
    records: list[tuple[int, LogItem]] = field(default_factory=list)
    parked: list[Parked] = field(default_factory=list)
    first_offset: int = 0
    next_offset: int = 0
    appended_at: float = 0.0


class ConsentFilter(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        settings: ConsentSettings,
        consumer: AIOKafkaConsumer,
        store: ConsentStore,
        transactions: PartitionTransactions,
    ) -> None:
        self.consumer, self.store, self.transactions = consumer, store, transactions
        self.defaults: Defaults = settings.default_consent()
        self.allowed_topic, self.log_topic, self.dead_letter_topic = (
            settings.topic(CUSTOMER_ALLOWED),
            settings.topic(CUSTOMER_LOG),
            settings.topic(TOUCH_DLQ),
        )
        self.states: dict[int, dict[str, ConsentState]] = {}  # per input partition: customer -> state
        self.deciding = asyncio.Lock()  # held while a batch is decided and its commits started
        self.committing: dict[TopicPartition, asyncio.Task[None]] = {}

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.deciding:
            await self._settle()
            await self.transactions.release(revoked)
            for tp in revoked:
                self.states.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self.deciding:
            await self.transactions.own(assigned)

    async def poll_once(self, batch_max: int, linger: float) -> None:
        """One batch from the partitions with no commit in flight."""
        self._reap()
        if self.committing and not self._readable():
            await asyncio.wait(self.committing.values(), return_when=asyncio.FIRST_COMPLETED)
            return
        polled = await poll_batch(self.consumer, batch_max, linger, self._readable)
        async with self.deciding:
            await self._decide([self._decoded(tp, records) for tp, records in polled.items() if records])

    def _readable(self) -> list[TopicPartition]:
        """The partitions whose last commit is done, asked at each read of a poll, so that a partition
        whose commit ends while the poll lingers joins it; none named (every partition) when none is in
        flight. Only the loop starts commits, so within a poll the list only grows."""
        if all(task.done() for task in self.committing.values()):
            return []
        return [
            tp for tp in self.consumer.assignment() if tp not in self.committing or self.committing[tp].done()
        ]

    async def _settle(self) -> None:
        """Waits for the commits in flight. What one of them raised is left for the loop's next poll to
        raise: a rebalance listener's exception would only be logged."""
        if self.committing:
            await asyncio.wait(self.committing.values())

    async def abandon(self) -> None:
        """Stops the commits in flight: their transactions stay open until the partitions' next owner
        aborts them, exactly as after a crash."""
        for task in self.committing.values():
            task.cancel()
        await asyncio.gather(*self.committing.values(), return_exceptions=True)
        self.committing.clear()

    def _reap(self) -> None:
        """Forgets the finished commits; raises what one of them raised."""
        for tp, task in list(self.committing.items()):
            if task.done():
                del self.committing[tp]
                task.result()

    async def _decide(self, batches: list[PartitionBatch]) -> None:
        if not batches:
            return
        await self._load_states(batches)
        changes = [
            (record, batch.source.partition, offset)
            for batch in batches
            for offset, record in batch.records
            if isinstance(record, ConsentChange)
        ]
        await while_unavailable(lambda: self.store.record(changes), "consent audit")
        # Each partition's transaction is its own (its own producer): committed side by side, not in turn.
        for batch in batches:
            # Decided on a copy: should the transaction not commit, the kept states stay as Kafka has them.
            states = dict(self.states.get(batch.source.partition, {}))
            decided = filter_batch(batch.records, states, self.defaults)
            self.committing[batch.source] = asyncio.create_task(self._commit(batch, states, decided))

    def _decoded(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> PartitionBatch:
        batch = PartitionBatch(
            tp,
            first_offset=records[0].offset,
            next_offset=records[-1].offset + 1,
            appended_at=records[0].timestamp / 1000,
        )
        for record in records:
            try:
                batch.records.append((record.offset, read_logged(record.value or b"")))
            except ValidationError as error:
                # Only Touchline writes the customer log: park what it cannot read, never skip it silently.
                UNREADABLE.inc()
                headers = parked_headers(str(error), STAGE, origin_of(record))
                batch.parked.append(Parked(self.dead_letter_topic, record.key, record.value, headers))
        return batch

    async def _resume_at(self, tp: TopicPartition, offset: int) -> None:
        """The next read of `tp` starts where this worker's commits left it.

        A rebalance can land while a batch is being polled: the partition comes back to this worker with
        its position reset to the last committed offset, and the poll goes on from there. Only what was
        committed counts, so the position is set to it, neither skipping nor repeating a record.
        """
        if tp in self.consumer.assignment() and await self.consumer.position(tp) != offset:
            self.consumer.seek(tp, offset)

    async def _load_states(self, batches: Sequence[PartitionBatch]) -> None:
        unknown = {
            (batch.source.partition, record.customer_id)
            for batch in batches
            for _, record in batch.records
            if record.customer_id not in self.states.get(batch.source.partition, {})
        }
        if sum(map(len, self.states.values())) + len(unknown) > CACHED_CUSTOMERS:
            self.states.clear()
            unknown = {(b.source.partition, r.customer_id) for b in batches for _, r in b.records}
        if not unknown:
            return
        customers = sorted({customer for _, customer in unknown})
        loaded = await while_unavailable(lambda: self.store.states(customers), "consent state")
        for partition, customer in unknown:
            self.states.setdefault(partition, {})[customer] = loaded[customer]

    async def _commit(
        self, batch: PartitionBatch, states: dict[str, ConsentState], decided: Sequence[Sequence[Output]]
    ) -> None:
        allowed = [
            _record(output)
            for outputs in decided
            for output in outputs
            if not isinstance(output, ConsentChange)
        ]
        carried = [
            _record(output) for outputs in decided for output in outputs if isinstance(output, ConsentChange)
        ]
        try:
            await self.transactions.commit(
                batch.source,
                {self.allowed_topic: allowed, self.log_topic: carried}
                if carried
                else {self.allowed_topic: allowed},
                batch.parked,
                batch.next_offset,
            )
        except PartitionFenced:
            log.warning(
                "partition moved to another worker; its batch is theirs",
                extra={"partition": str(batch.source)},
            )
            self.states.pop(batch.source.partition, None)
            await self._resume_at(batch.source, batch.first_offset)
            return
        self.states[batch.source.partition] = states
        await self._resume_at(batch.source, batch.next_offset)
        _count(batch.records, decided)
        BATCH_SIZE.observe(len(batch.records))
        FILTER_LAG.observe(max(0.0, time.time() - batch.appended_at))


def _record(output: Output) -> tuple[bytes, bytes]:
    if isinstance(output, ForwardedTouch):
        return output.customer_id.encode(), output.wire()
    if isinstance(output, AllowedTouch):
        return output.event.customer_id.encode(), encode(output)
    return output.customer_id.encode(), encode(output)


def _count(records: Sequence[tuple[int, LogItem]], decided: Sequence[Sequence[Output]]) -> None:
    """Metrics of a batch, counted per purpose set rather than per record and purpose."""
    allowed_sets: Counter[frozenset[Purpose]] = Counter()
    for (_, record), outputs in zip(records, decided, strict=True):
        if isinstance(record, ConsentChange):
            CHANGES.labels(record.purpose.value, record.status.value).inc()
            ERASE_MARKERS.labels(record.purpose.value).inc(len(outputs))
        elif isinstance(record, ProfileMerged):
            CARRIED_OVER.inc(sum(isinstance(output, ConsentChange) for output in outputs))
        elif isinstance(record, (ProfileAbsorbed, ProfileSplit)):
            continue
        else:
            forwarded = outputs[0] if outputs else None
            allowed_sets[
                forwarded.purposes if isinstance(forwarded, (AllowedTouch, ForwardedTouch)) else frozenset()
            ] += 1
    DROPPED.inc(allowed_sets[frozenset()])
    for purpose in Purpose:
        allowed = sum(count for purposes, count in allowed_sets.items() if purpose in purposes)
        DECISIONS.labels(purpose.value, "allowed").inc(allowed)
        DECISIONS.labels(purpose.value, "denied").inc(allowed_sets.total() - allowed)


async def run_filter(settings: ConsentSettings) -> None:
    start_http_server(settings.consent_worker_metrics_port, addr=settings.consent_host)
    group = group_id(settings, "consent")
    pool = await create_pool(settings.pg_dsn.get_secret_value(), max_size=2)
    consumer = create_batch_consumer(settings, "consent")
    transactions = PartitionTransactions(settings, group)
    consent_filter = ConsentFilter(settings, consumer, ConsentStore(pool), transactions)
    consumer.subscribe([settings.topic(CUSTOMER_LOG)], listener=consent_filter)
    await consumer.start()
    try:
        while True:
            await consent_filter.poll_once(settings.consent_batch_max, settings.consent_batch_linger_seconds)
    finally:
        await consent_filter.abandon()
        await consumer.stop()
        await transactions.close()
        await pool.close()
