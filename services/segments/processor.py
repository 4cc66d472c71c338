"""The segment evaluator process: a batch loop over the allowed stream, a timer, a backfill and a relay.

A plain aiokafka loop rather than a Faust agent, as for the timeline projector and the consent filter:
each poll is one batch for the evaluation step (evaluator.py), and its offsets are committed only once
that batch's transaction has committed. The tracking rows make evaluation exactly-once whatever Kafka
redelivers; the commit only bounds how much it redelivers after a restart.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import start_http_server

from services.segments.definitions import DefinitionsFeed
from services.segments.evaluation_store import EvaluationStore
from services.segments.evaluator import RELAY_BATCH, SETTLE_BATCH, Evaluator, repeat, wake_on
from services.segments.metrics import BATCH_SIZE, STATE_BYTES, STATE_CUSTOMERS
from services.segments.outbox import ChangeOutbox
from services.segments.settings import SegmentsSettings
from shared.db import create_pool
from shared.failures import Failure, classify
from shared.kafka import DeadLetters, DurablePublisher, create_producer, poll_batch
from shared.streams import create_batch_consumer
from shared.topics import CUSTOMER_ALLOWED, TOUCH_DLQ

log = logging.getLogger(__name__)


class BatchLoop(ConsumerRebalanceListener):  # type: ignore[misc]
    """One batch evaluated at a time; a rebalance waits for the batch in hand."""

    def __init__(self, consumer: AIOKafkaConsumer, evaluator: Evaluator) -> None:
        self.consumer, self.evaluator = consumer, evaluator
        self.evaluating = asyncio.Lock()

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.evaluating:
            # The next owner adds touches to these customers' digests: this worker's copies go stale.
            self.evaluator.cache.drop_partitions(tp.partition for tp in revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None

    async def poll_once(self, batch_max: int, linger: float) -> None:
        polled = await poll_batch(self.consumer, batch_max, linger)
        async with self.evaluating:
            # A rebalance may have landed while this batch was polled: what is no longer this worker's is
            # the new owner's, and a revocation waits for this lock, so the assignment holds from here.
            assigned = self.consumer.assignment()
            polled = {tp: batch for tp, batch in polled.items() if tp in assigned and batch}
            records = [record for batch in polled.values() for record in batch]
            if not records:
                return
            BATCH_SIZE.observe(len(records))
            await self.evaluator.evaluate_batch(records)
            try:
                await self.consumer.commit(
                    {tp: batch[-1].offset + 1 for tp, batch in polled.items() if batch}
                )
            except (CommitFailedError, IllegalStateError):
                # Moved mid-batch: the new owner skips what the tracking rows say is done.
                log.warning("offsets not committed after a rebalance; the tracking rows hold them")


async def _every(seconds: float, work: Callable[[], Awaitable[int]], what: str, full: int) -> None:
    while True:
        await repeat(work, what, full)
        await asyncio.sleep(seconds)


async def _on(event: asyncio.Event, work: Callable[[], Awaitable[int]], what: str, full: int) -> None:
    while True:
        await wake_on(event, 1.0)  # also on a timeout: work a failed attempt left behind
        await repeat(work, what, full)


async def _measure_state(store: EvaluationStore) -> None:
    while True:
        try:
            customers, size = await store.state_size()
            STATE_CUSTOMERS.set(customers)
            STATE_BYTES.set(size)
        except Exception as error:
            if classify(error) is not Failure.UNAVAILABLE:
                raise
            log.warning("could not measure segment state", extra={"error": repr(error)})
        await asyncio.sleep(15.0)


async def run_evaluator(settings: SegmentsSettings) -> None:
    start_http_server(settings.segments_worker_metrics_port, addr=settings.segments_host)
    pool = await create_pool(settings.pg_dsn.get_secret_value(), max_size=4)
    publisher = DurablePublisher(settings, settings.segments_publish_timeout_seconds)
    producer = create_producer(settings)
    store, feed = EvaluationStore(pool), DefinitionsFeed()
    dead_letters = DeadLetters(producer, settings.topic(TOUCH_DLQ), "segments-evaluator")
    evaluator = Evaluator(settings, (store, ChangeOutbox(pool)), feed, dead_letters.park)
    consumer = create_batch_consumer(settings, "segments")
    loop = BatchLoop(consumer, evaluator)
    following = asyncio.create_task(feed.follow(settings))
    await producer.start()
    try:
        await feed.loaded.wait()  # no batch is evaluated against definitions not yet read
        consumer.subscribe([settings.topic(CUSTOMER_ALLOWED)], listener=loop)
        await consumer.start()
        interval = settings.segments_timer_interval_seconds
        await asyncio.gather(
            following,
            _poll(loop, settings.segments_batch_max, settings.stream_batch_linger_seconds),
            _every(interval, evaluator.settle_due, "timer", SETTLE_BATCH),
            _on(feed.changed, evaluator.settle_stale, "backfill", SETTLE_BATCH),
            _on(evaluator.decided, partial(evaluator.relay, publisher), "relay", RELAY_BATCH),
            _measure_state(store),
        )
    finally:
        following.cancel()
        await consumer.stop()
        await producer.stop()
        await publisher.close()
        await pool.close()


async def _poll(loop: BatchLoop, batch_max: int, linger: float) -> None:
    while True:
        await loop.poll_once(batch_max, linger)
