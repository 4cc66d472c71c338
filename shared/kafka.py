"""Kafka adapters: producer and consumer factories with the project's guarantees, and topic creation."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from shared.failures import Unavailable
from shared.settings import TouchlineSettings
from shared.topics import ALL_TOPICS, TopicSpec

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


def create_producer(settings: TouchlineSettings, **overrides: Any) -> AIOKafkaProducer:
    """A producer whose acknowledgement means durable: all in-sync replicas, no duplicates on retry."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        # Every send here is awaited (a request's durability, a transaction's commit) and batches are built
        # by send_partitioned, so lingering only delays: at 5 ms a consent change took 9.1 ms and 2.4 ms of
        # the API's CPU, at 0 ms 1.5 ms and 1.2 ms (2,000 PUTs one after another).
        "linger_ms": 0,
        "request_timeout_ms": 10_000,
    }
    return AIOKafkaProducer(**(options | overrides))


def create_consumer(
    settings: TouchlineSettings, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer that commits only when told to, after its work is durable, and never sees aborted writes."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    return AIOKafkaConsumer(*topics, **(options | overrides))


async def ensure_topics(settings: TouchlineSettings, specs: Iterable[TopicSpec] = ALL_TOPICS) -> list[str]:
    """Create the registry's topics that do not exist yet; returns the names it created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                settings.topic(spec),
                spec.partitions,
                replication_factor=settings.kafka_replication_factor,
                topic_configs=spec.config(settings.kafka_min_insync_replicas),
            )
            for spec in specs
            if settings.topic(spec) not in existing
        ]
        if not missing:
            return []
        response = await admin.create_topics(missing)
        failures = [
            (name, code, message)
            for name, code, message in response.topic_errors
            if code not in (0, TOPIC_ALREADY_EXISTS)
        ]
        if failures:
            raise RuntimeError(f"could not create topics: {failures}")
        created = [topic.name for topic in missing]
        log.info("created topics", extra={"topics": created})
        return created
    finally:
        await admin.close()


class RecordPublisher(Protocol):
    """The port APIs publish through; DurablePublisher is the Kafka adapter, tests bring fakes."""

    async def publish(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


class BrokerUnavailable(Unavailable):
    """The broker did not acknowledge in time; the caller may retry the whole request safely."""


class DurablePublisher:
    """Sends records and returns only once the broker acknowledged every one (acks=all, idempotent).

    The producer starts lazily and is rebuilt after a failed start, so an API comes up, and answers
    503, while the broker is away, and recovers on its own when it is back.
    """

    def __init__(self, settings: TouchlineSettings, timeout_seconds: float) -> None:
        self._settings, self._timeout = settings, timeout_seconds
        self._producer: AIOKafkaProducer | None = None
        self._starting = asyncio.Lock()

    async def _started(self) -> AIOKafkaProducer:
        async with self._starting:
            if self._producer is None:
                producer = create_producer(self._settings, request_timeout_ms=int(self._timeout * 1000))
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def publish(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Key-value pairs to `topic`, in order per key; raises BrokerUnavailable past the timeout."""
        producer = None
        try:
            async with asyncio.timeout(self._timeout):
                producer = await self._started()
                await asyncio.gather(*await send_partitioned(producer, topic, records))
        except (TimeoutError, KafkaError) as error:
            if isinstance(error, KafkaError) and not error.retriable and producer is not None:
                await self._discard(producer, error)
            raise BrokerUnavailable(
                f"Kafka did not acknowledge within {self._timeout:g} s: {error!r}"
            ) from error

    async def _discard(self, producer: AIOKafkaProducer, error: KafkaError) -> None:
        """Replaces a producer whose idempotence state the broker no longer accepts.

        After a broker restart with batches in flight, aiokafka's sequence numbers can run ahead of the
        broker's: every later send fails with OutOfOrderSequenceNumber, and the producer never recovers
        (seen in the fault suite's Kafka-restart scenario). A fresh producer gets a new producer id. The
        old one is stopped first, so none of its batches can land after the retry's.
        """
        async with self._starting:
            if self._producer is producer:
                self._producer = None
        log.warning("replacing a producer the broker refuses", extra={"error": repr(error)})
        with contextlib.suppress(KafkaError, TimeoutError):
            async with asyncio.timeout(self._timeout):
                await producer.stop()

    async def ready(self) -> bool:
        try:
            async with asyncio.timeout(min(self._timeout, 2.0)):
                producer = await self._started()
                await producer.client.fetch_all_metadata()
        except (TimeoutError, KafkaError):
            return False
        return True

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


@lru_cache(maxsize=1 << 17)
def _partition_of(key: bytes, count: int) -> int:
    """The default (murmur2) partitioner's choice, remembered: aiokafka's murmur2 is pure Python, and
    the same customers' keys come back batch after batch (it was 6% of the consent filter's CPU)."""
    return int(DefaultPartitioner()(key, range(count), None))


async def send_partitioned(
    producer: AIOKafkaProducer, topic: str, records: Sequence[tuple[bytes, bytes]]
) -> list[asyncio.Future[Any]]:
    """Hands records to the producer one batch per partition instead of one call per record.

    aiokafka's per-record send() costs more CPU than validating and encoding the record; its batch API
    keeps the idempotent sequence numbers. Partitions are chosen by the default (murmur2) partitioner,
    as every other client does, so a customer's records land where consumers expect them.
    """
    count = len(await producer.partitions_for(topic))
    open_batches: dict[int, Any] = {}
    pending: list[asyncio.Future[Any]] = []
    for key, value in records:
        partition = _partition_of(key, count)
        batch = open_batches.get(partition)
        if batch is None:
            batch = open_batches[partition] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is not None:
            continue
        pending.append(await producer.send_batch(batch, topic, partition=partition))
        batch = open_batches[partition] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # larger than a whole batch
            del open_batches[partition]
            pending.append(await producer.send(topic, value, key=key, partition=partition))
    for partition, batch in open_batches.items():
        pending.append(await producer.send_batch(batch, topic, partition=partition))
    return pending


Polled = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


def _every_partition() -> Sequence[TopicPartition]:
    return ()


async def poll_batch(
    consumer: AIOKafkaConsumer,
    max_records: int,
    linger_seconds: float,
    readable: Callable[[], Sequence[TopicPartition]] = _every_partition,
) -> Polled:
    """Records of one batch: what arrives within `linger_seconds` of the first, up to `max_records`,
    from the partitions `readable()` names at each read (every assigned partition when it names none).

    Under a steady load a bare poll returns whatever trickled in since the last one; every batch costs a
    transaction whatever its size, so lingering a little makes batches large and their cost per record
    small, for at most `linger_seconds` more latency.

    A rebalance while lingering can hand a partition back at its committed offset, so that records
    polled already come again: the batch then keeps them once, as read the second time.
    """
    polled: Polled = await consumer.getmany(*readable(), timeout_ms=100, max_records=max_records)
    count = sum(map(len, polled.values()))
    deadline = time.monotonic() + linger_seconds
    while 0 < count < max_records and (remaining := deadline - time.monotonic()) > 0:
        more = await consumer.getmany(
            *readable(), timeout_ms=int(remaining * 1000), max_records=max_records - count
        )
        for tp, records in more.items():
            kept = polled.setdefault(tp, [])
            if kept and records and records[0].offset <= kept[-1].offset:
                kept[:] = [record for record in kept if record.offset < records[0].offset]
            kept.extend(records)
        count = sum(map(len, polled.values()))
    return polled


def parked_headers(error: str, stage: str, origin: str) -> list[tuple[str, bytes]]:
    """Why, when, by which stage and from where (`topic/partition/offset`) a record was parked."""
    return [
        ("error", error.encode()),
        ("stage", stage.encode()),
        ("failed_at", datetime.now(UTC).isoformat().encode()),
        ("origin", origin.encode()),
    ]


class Positioned(Protocol):
    """Where a record sits: aiokafka's ConsumerRecord and Faust's Message both say so."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


def origin_of(record: Positioned) -> str:
    """The `origin` header of a parked record: `topic/partition/offset`."""
    return f"{record.topic}/{record.partition}/{record.offset}"


class DeadLetters:
    """Parks records a stream processor cannot read or store: original key and bytes, with why, when,
    which stage and whence, so an operator can fix and replay them."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, stage: str) -> None:
        self.producer, self.topic, self.stage = producer, topic, stage

    async def park(self, record: ConsumerRecord[bytes, bytes], error: str) -> None:
        headers = parked_headers(error, self.stage, origin_of(record))
        await (await self.producer.send(self.topic, record.value, key=record.key, headers=headers))
