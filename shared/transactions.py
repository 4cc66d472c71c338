"""Exactly-once from one topic to others: one Kafka transaction per input partition and batch.

Each owned input partition has its own transactional producer, its `transactional.id` named after the
consumer group and the partition. When a partition moves, its new owner starts a producer under the same
id before reading it, which aborts whatever the previous owner left open and fences that owner off: a
worker that lost a partition (frozen past its session, then woken) can no longer commit for it.
"""

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from shared.kafka import create_producer, send_partitioned
from shared.streams import StreamSettings

log = logging.getLogger(__name__)
Records = Sequence[tuple[bytes, bytes]]


class Parked(NamedTuple):
    """A record for the dead-letter topic, with the headers that say why."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class PartitionFenced(Exception):
    """Another worker owns the partition now; this batch's outputs were never committed."""


class PartitionTransactions:
    """Transactional producers for the input partitions this worker owns."""

    def __init__(self, settings: StreamSettings, group_id: str) -> None:
        self.settings, self.group_id = settings, group_id
        self.owned: set[TopicPartition] = set()
        self.producers: dict[TopicPartition, AIOKafkaProducer] = {}

    async def own(self, partitions: Iterable[TopicPartition]) -> None:
        """Starting each producer fences the partition's previous owner and aborts its open transaction.

        With the broker away a producer starts at the partition's first commit instead, still before
        anything is committed for it.
        """
        partitions = list(partitions)
        self.owned.update(partitions)
        for tp in partitions:
            try:
                async with asyncio.timeout(self.settings.stream_transaction_timeout_seconds):
                    await self._producer(tp)
            except (KafkaError, TimeoutError) as error:
                log.warning("producer not started yet", extra={"partition": str(tp), "error": repr(error)})

    async def release(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self.owned.discard(tp)
            await self._drop(tp)

    async def commit(
        self,
        source: TopicPartition,
        outputs: Mapping[str, Records],
        parked: Sequence[Parked],
        next_offset: int,
    ) -> None:
        """`outputs` (topic -> key/value records), `parked` records and the group's offset of `source`,
        all or nothing.

        Retries through broker outages; raises PartitionFenced once the partition has moved on.
        """
        backoff = 0.1
        while True:
            if source not in self.owned:
                raise PartitionFenced(str(source))
            try:
                # Bounded: a transaction stuck on a broker that went away is retried, not awaited forever.
                async with asyncio.timeout(self.settings.stream_transaction_timeout_seconds):
                    producer = await self._producer(source)
                    async with producer.transaction():
                        await _send(producer, outputs, parked)
                        await producer.send_offsets_to_transaction({source: next_offset}, self.group_id)
                return
            except ProducerFenced as fenced:
                await self.release([source])
                raise PartitionFenced(str(source)) from fenced
            except KafkaError as error:
                log.warning(
                    "transaction failed; retrying", extra={"partition": str(source), "error": repr(error)}
                )
                # A producer whose transaction failed may be unusable: its successor aborts what is left open.
                await self._drop(source)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def close(self) -> None:
        await self.release(list(self.owned))

    async def _producer(self, tp: TopicPartition) -> AIOKafkaProducer:
        if tp not in self.producers:
            producer = create_producer(
                self.settings, transactional_id=f"{self.group_id}.{tp.topic}.{tp.partition}"
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self.producers[tp] = producer
        return self.producers[tp]

    async def _drop(self, tp: TopicPartition) -> None:
        producer = self.producers.pop(tp, None)
        if producer is not None:
            try:
                async with asyncio.timeout(self.settings.stream_transaction_timeout_seconds):
                    await producer.stop()
            except TimeoutError:
                log.warning("producer did not stop in time; abandoned", extra={"partition": str(tp)})


async def _send(producer: AIOKafkaProducer, outputs: Mapping[str, Records], parked: Sequence[Parked]) -> None:
    pending = [await producer.send(p.topic, p.value, key=p.key, headers=p.headers) for p in parked]
    pending += [
        future
        for topic, records in outputs.items()
        for future in await send_partitioned(producer, topic, records)
    ]
    await asyncio.gather(*pending)
