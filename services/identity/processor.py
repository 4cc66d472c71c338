"""The identity resolver: touches naming identities in, each resolved to a profile on the customer log.

A plain aiokafka loop, like the consent filter: one poll is one batch, its graph read in two statements,
decided by the pure domain in `identity.inbound`'s single order, its graph changes written in one
PostgreSQL transaction, and its outputs (resolved touches to `customer.log`, changes to
`identity.changes`) and next offset committed in one Kafka transaction (shared/transactions.py).

At every crash point (SIGKILL included):
- before the PostgreSQL transaction commits: nothing of the batch is anywhere; Kafka redelivers it.
- after it, before the Kafka transaction commits: the graph holds the batch's changes and every touch's
  resolution by offset. Kafka redelivers the batch; the resolver reads those resolutions back and
  publishes them as decided instead of deciding again on a graph that already holds them, so the
  outputs are the ones the first pass would have published. The open Kafka transaction is aborted when
  the next producer under the same transactional id starts, so no read_committed reader saw it.
- after the Kafka transaction commits: outputs, parked records and the offset are all committed.
Erasures and splits are recorded by their offset too (identity_erasures, identity_splits), so a replayed
one publishes what it first did.
"""

import asyncio
import logging
import time
from collections.abc import Sequence
from functools import partial

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from prometheus_client import start_http_server
from pydantic import TypeAdapter, ValidationError

from services.identity.domain import Change, Graph, IdentityRules, apply, decide, goes_with, identifiers_of
from services.identity.metrics import (
    BATCH_SIZE,
    BLOCKED,
    CHANGES,
    ERASED,
    RESOLVED,
    RESOLVER_LAG,
    SPLIT_TOUCHES,
    UNREADABLE,
)
from services.identity.settings import IdentitySettings
from services.identity.store import Decided, IdentityStore, change_id
from shared.db import create_pool
from shared.events import (
    ErasureRequested,
    IdentifiedTouch,
    IdentityChange,
    IdentityInboundRecord,
    ProfileAbsorbed,
    ProfileMerged,
    ProfileSplit,
    SplitRequested,
    TouchEvent,
)
from shared.events import IdentityChangeKind as ChangeKind
from shared.failures import while_unavailable
from shared.identities import NORMALIZED
from shared.kafka import create_consumer, origin_of, parked_headers, poll_batch
from shared.purposes import erasure_of
from shared.serialization import encode
from shared.streams import create_batch_consumer, group_id
from shared.topics import CUSTOMER_LOG, IDENTITY_CHANGES, IDENTITY_INBOUND, TOUCH_DLQ
from shared.transactions import Parked, PartitionFenced, PartitionTransactions, Records

log = logging.getLogger(__name__)
STAGE = "identity-resolver"
InboundItem = IdentifiedTouch | ErasureRequested | SplitRequested


class Resolver(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        settings: IdentitySettings,
        consumer: AIOKafkaConsumer,
        store: IdentityStore,
        transactions: PartitionTransactions,
    ) -> None:
        self.consumer, self.store, self.transactions = consumer, store, transactions
        self.settings = settings
        self.rules: IdentityRules = settings.rules()
        # Only the first batch after taking the partition can be one a previous owner wrote to PostgreSQL
        # and never committed to Kafka: it alone looks resolutions up, not every batch.
        self.may_replay = True
        self.topics = {
            "log": settings.topic(CUSTOMER_LOG),
            "changes": settings.topic(IDENTITY_CHANGES),
            "dlq": settings.topic(TOUCH_DLQ),
            "inbound": settings.topic(IDENTITY_INBOUND),
        }

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.transactions.release(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.may_replay = True
        await self.transactions.own(assigned)

    async def poll_once(self, batch_max: int, linger: float) -> None:
        polled = await poll_batch(self.consumer, batch_max, linger)
        for tp, records in polled.items():
            if records:
                await self._resolve(tp, records)

    async def _resolve(self, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        items, parked = self._decoded(records)
        written = await self._written(records[0].offset)
        outputs: dict[str, list[tuple[bytes, bytes]]] = {self.topics["log"]: [], self.topics["changes"]: []}
        decided: list[Decided] = []
        for run in _runs(items):
            if isinstance(run, tuple) and isinstance(run[1], ErasureRequested):
                outputs[self.topics["log"]] += await self._erase(run[0], run[1])
                continue
            if isinstance(run, tuple) and isinstance(run[1], SplitRequested):
                for topic, produced in (await self._split(run[0], run[1])).items():
                    outputs[topic] += produced
                continue
            assert isinstance(run, dict)
            resolved = await self._decided(run, written)
            decided += resolved
            for topic, produced in outputs_of(resolved, run, self.topics).items():
                outputs[topic] += produced
        try:
            await self.transactions.commit(tp, outputs, parked, records[-1].offset + 1)
        except PartitionFenced:
            log.warning(
                "partition moved to another worker; its batch is theirs", extra={"partition": str(tp)}
            )
            self.consumer.seek(tp, records[0].offset)
            return
        self.may_replay = False
        RESOLVED.inc(len(decided))
        BATCH_SIZE.observe(len(records))
        RESOLVER_LAG.observe(max(0.0, time.time() - records[0].timestamp / 1000))

    async def _erase(self, offset: int, request: ErasureRequested) -> list[tuple[bytes, bytes]]:
        """Forgets the person's identifiers; the profiles a merge joined to them are erased as they were,
        through the customer log, so every projection deletes them as it deletes any erased customer."""
        absorbed = await while_unavailable(
            lambda: self.store.erase(offset, request.customer_id), "identity graph"
        )
        ERASED.inc(1 + len(absorbed))
        return [
            (profile.encode(), encode(change))
            for profile in absorbed
            for change in erasure_of(
                profile, f"{request.erasure_id}:{profile}", request.requested_at, request.source
            )
        ]

    async def _split(self, offset: int, request: SplitRequested) -> dict[str, Records]:
        """Undoes a wrong merge: the identifier and the touches that go with it leave the profile. They are
        logged again for the profile the identifier goes to, read back from identity.inbound (kept
        forever for this), and a ProfileSplit tells the projections to drop them where they were."""
        split = await while_unavailable(
            lambda: self.store.split(offset, request, partial(goes_with, rules=self.rules)), "identity graph"
        )
        if split is None:
            log.warning("split refused: not that profile's to split", extra={"split_id": request.split_id})
            return {}
        touches = await _read_back(self.settings, self.topics["inbound"], [o for o, _, _ in split.moved])
        cause = change_id(request.split_id, 0)
        change = IdentityChange(
            change_id=cause,
            change=ChangeKind.SPLIT,
            profile_id=split.split_off,
            other_profile_id=split.profile,
            identifier_kind=request.identifier_kind,
            identifier_value=request.identifier_value,
            caused_by=request.split_id,
            at=request.requested_at,
        )
        notice = ProfileSplit(
            change_id=cause,
            customer_id=split.profile,
            split_off=split.split_off,
            identifier_kind=request.identifier_kind,
            identifier_value=request.identifier_value,
            event_ids=[event for _, event, _ in split.moved],
            detached_from=sorted({was for _, _, was in split.moved} - {split.profile, split.split_off}),
            caused_by=request.split_id,
            at=request.requested_at,
        )
        logged = [(split.profile.encode(), encode(notice))]
        logged += [
            (split.split_off.encode(), resolved(touches[o], split.split_off)) for o, _, _ in split.moved
        ]
        SPLIT_TOUCHES.inc(len(split.moved))
        return {
            self.topics["log"]: logged,
            self.topics["changes"]: [(split.split_off.encode(), encode(change))],
        }

    def _decoded(
        self, records: list[ConsumerRecord[bytes, bytes]]
    ) -> tuple[dict[int, InboundItem], list[Parked]]:
        items: dict[int, InboundItem] = {}
        parked = []
        for record in records:
            try:
                # ingest normalized the identities; normalizing them again cost more than resolving
                items[record.offset] = _inbound.validate_json(record.value or b"", context=NORMALIZED)
            except ValidationError as error:
                # Only Touchline writes identity.inbound: park what it cannot read, never skip it silently.
                UNREADABLE.inc()
                headers = parked_headers(str(error), STAGE, origin_of(record))
                parked.append(Parked(self.topics["dlq"], record.key, record.value, headers))
        return items, parked

    async def _written(self, first_offset: int) -> dict[int, tuple[str, list[Change]]]:
        if not self.may_replay:
            return {}
        return await while_unavailable(lambda: self.store.decided_from(first_offset), "identity resolutions")

    async def _decided(
        self, touches: dict[int, IdentifiedTouch], written: dict[int, tuple[str, list[Change]]]
    ) -> list[Decided]:
        """Each touch's resolution: read back when an earlier pass wrote it, else decided and written."""
        named = {
            offset: identifiers_of(t.customer_id, t.identities, self.rules) for offset, t in touches.items()
        }
        graph = await while_unavailable(
            lambda: self.store.graph_of({i for ids in named.values() for i in ids}), "identity graph"
        )
        decided, new = [], []
        for offset, touch in touches.items():
            if offset in written:
                profile, changes = written[offset]
            else:
                profile, changes = _decide(graph, named[offset], touch, self.rules)
            apply(graph, changes)
            decision = Decided(offset, touch.event_id, profile, changes, touch.received_at, named[offset])
            decided.append(decision)
            if offset not in written:
                new.append(decision)
        if new:
            await while_unavailable(lambda: self.store.write(new), "identity graph")
        return decided


_inbound = TypeAdapter[InboundItem](IdentityInboundRecord)
Run = dict[int, IdentifiedTouch] | tuple[int, ErasureRequested | SplitRequested]


async def _read_back(
    settings: IdentitySettings, topic: str, offsets: list[int]
) -> dict[int, IdentifiedTouch]:
    """Touches of identity.inbound by their offsets (a split's, so few)."""
    consumer = create_consumer(settings, group_id=None)
    partition = TopicPartition(topic, 0)
    await consumer.start()
    try:
        consumer.assign([partition])
        touches: dict[int, IdentifiedTouch] = {}
        for offset in offsets:
            consumer.seek(partition, offset)
            record = await asyncio.wait_for(consumer.getone(partition), timeout=30)
            item = _inbound.validate_json(record.value or b"", context=NORMALIZED)
            if isinstance(item, IdentifiedTouch):
                touches[offset] = item
        return touches
    finally:
        await consumer.stop()


def _runs(items: dict[int, InboundItem]) -> list[Run]:
    """The batch in order, as runs of touches decided together and the erasures and splits between them."""
    runs: list[Run] = []
    touches: dict[int, IdentifiedTouch] = {}
    for offset, item in items.items():
        if isinstance(item, IdentifiedTouch):
            touches[offset] = item
            continue
        if touches:
            runs.append(touches)
            touches = {}
        runs.append((offset, item))
    return [*runs, touches] if touches else runs


def _decide(
    graph: Graph, named: list[tuple[str, str]], touch: IdentifiedTouch, rules: IdentityRules
) -> tuple[str, list[Change]]:
    BLOCKED.inc(len(touch.identities) + (touch.customer_id is not None) - len(named))
    resolution = decide(graph, named, touch.event_id, rules)
    for change in resolution.changes:
        CHANGES.labels(change.kind.value).inc()
    return resolution.profile, resolution.changes


def outputs_of(
    decided: Sequence[Decided], touches: dict[int, IdentifiedTouch], topics: dict[str, str]
) -> dict[str, Records]:
    logged: list[tuple[bytes, bytes]] = []
    changes: list[tuple[bytes, bytes]] = []
    for decision in decided:
        logged.append((decision.profile.encode(), resolved(touches[decision.offset], decision.profile)))
        for n, change in enumerate(decision.changes):
            wire = _wire(change, n, decision)
            changes.append((change.profile.encode(), encode(wire)))
            if change.kind == ChangeKind.MERGED and change.other:
                # Each side in its own profile's order: the absorbed one's last record, after every touch
                # of its own, and the survivor's, after the touch that caused it.
                logged.append((change.other.encode(), encode(_merged(wire, change.other))))
                absorbed = ProfileAbsorbed(
                    change_id=wire.change_id, customer_id=wire.profile_id, absorbed=change.other, at=wire.at
                )
                logged.append((wire.profile_id.encode(), encode(absorbed)))
    return {topics["log"]: logged, topics["changes"]: changes}


def resolved(touch: IdentifiedTouch, profile: str) -> bytes:
    """The touch as the customer log holds it, for its profile (version 2)."""
    # Built from a validated touch and a valid profile id: validating it again would cost ~60 us.
    fields = touch.model_dump(exclude={"schema_version", "kind", "customer_id"})
    return encode(TouchEvent.model_construct(**fields, customer_id=profile, schema_version=2, kind="touch"))


def _merged(change: IdentityChange, absorbed: str) -> ProfileMerged:
    return ProfileMerged(
        change_id=change.change_id,
        customer_id=absorbed,
        survivor=change.profile_id,
        identifier_kind=change.identifier_kind,
        identifier_value=change.identifier_value,
        caused_by=change.caused_by,
        at=change.at,
    )


def _wire(change: Change, position: int, decision: Decided) -> IdentityChange:
    return IdentityChange(
        change_id=change_id(decision.event_id, position),
        change=change.kind,
        profile_id=change.profile,
        other_profile_id=change.other,
        identifier_kind=change.identifier[0],
        identifier_value=change.identifier[1],
        reason=change.reason,
        caused_by=decision.event_id,
        at=decision.at,
    )


async def run_resolver(settings: IdentitySettings) -> None:
    start_http_server(settings.identity_worker_metrics_port, addr=settings.identity_host)
    pool = await create_pool(settings.pg_dsn.get_secret_value(), max_size=2)
    consumer = create_batch_consumer(settings, "identity")
    transactions = PartitionTransactions(settings, group_id(settings, "identity"))
    resolver = Resolver(settings, consumer, IdentityStore(pool), transactions)
    consumer.subscribe([settings.topic(IDENTITY_INBOUND)], listener=resolver)
    await consumer.start()
    try:
        while True:
            await resolver.poll_once(settings.identity_batch_max, settings.stream_batch_linger_seconds)
    finally:
        await consumer.stop()
        await transactions.close()
        await pool.close()
