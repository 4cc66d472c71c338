"""shared.kafka's batching, against a producer and a consumer stand-in: send_partitioned and poll_batch."""

import asyncio
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from shared.kafka import Polled, poll_batch, send_partitioned

PARTITIONS = 4


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity, self.records = capacity, list[tuple[bytes, bytes]]()

    def append(self, *, key: bytes, value: bytes, timestamp: None) -> object | None:
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value))
        return object()


class FakeProducer:
    def __init__(self, batch_capacity: int) -> None:
        self.batch_capacity = batch_capacity
        self.created = 0
        self.sent: list[tuple[int, list[tuple[bytes, bytes]]]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(PARTITIONS))

    def create_batch(self) -> FakeBatch:
        self.created += 1
        return FakeBatch(self.batch_capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> "asyncio.Future[Any]":
        self.sent.append((partition, batch.records))
        return _done()

    async def send(self, topic: str, value: bytes, *, key: bytes, partition: int) -> "asyncio.Future[Any]":
        self.sent.append((partition, [(key, value)]))
        return _done()


def _done() -> "asyncio.Future[Any]":
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def records(count: int) -> list[tuple[bytes, bytes]]:
    return [(f"c-{number % 37}".encode(), f"v{number}".encode()) for number in range(count)]


def sent_per_partition(producer: FakeProducer) -> dict[int, list[tuple[bytes, bytes]]]:
    per_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    for partition, batch in producer.sent:
        per_partition.setdefault(partition, []).extend(batch)
    return per_partition


def expected_per_partition(sent: list[tuple[bytes, bytes]]) -> dict[int, list[tuple[bytes, bytes]]]:
    per_partition: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in sent:
        partition = DefaultPartitioner()(key, list(range(PARTITIONS)), None)
        per_partition.setdefault(partition, []).append((key, value))
    return per_partition


async def test_records_go_to_their_keys_partitions_in_order_one_batch_per_partition_and_fill() -> None:
    producer, sent = FakeProducer(batch_capacity=100), records(1000)
    futures = await send_partitioned(producer, "topic", sent)
    assert sent_per_partition(producer) == expected_per_partition(sent)
    # A batch is created only when a partition has none open or its open one is full: creating one per
    # record cost more CPU than the records' own encoding.
    assert producer.created == len(producer.sent) == len(futures)
    assert len(producer.sent) <= 1000 // 100 + PARTITIONS


async def test_a_record_larger_than_a_whole_batch_is_sent_on_its_own_in_its_place() -> None:
    producer, sent = FakeProducer(batch_capacity=0), records(10)
    await send_partitioned(producer, "topic", sent)
    assert sent_per_partition(producer) == expected_per_partition(sent)


SOURCE = TopicPartition("customer.log", 3)


def consumed(offsets: range) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        ConsumerRecord(SOURCE.topic, SOURCE.partition, offset, 0, 0, b"k", b"v", None, 1, 1, ())
        for offset in offsets
    ]


class ScriptedConsumer:
    """Answers each getmany with the next poll of a script, then with nothing."""

    def __init__(self, *polls: Polled) -> None:
        self.polls = list(polls)

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int, max_records: int) -> Polled:
        return self.polls.pop(0) if self.polls else {}


async def test_a_batch_lingers_for_more_records_up_to_its_maximum() -> None:
    consumer = ScriptedConsumer({SOURCE: consumed(range(5))}, {SOURCE: consumed(range(5, 8))})
    polled = await poll_batch(consumer, max_records=100, linger_seconds=0.05)
    assert [record.offset for record in polled[SOURCE]] == list(range(8))


async def test_records_polled_again_after_a_rebalance_reset_the_position_are_kept_once() -> None:
    # Polled 10-14, then the partition came back at its committed offset 10 and 10-17 were read again.
    consumer = ScriptedConsumer({SOURCE: consumed(range(10, 15))}, {SOURCE: consumed(range(10, 18))})
    polled = await poll_batch(consumer, max_records=100, linger_seconds=0.05)
    assert [record.offset for record in polled[SOURCE]] == list(range(10, 18))
