"""`python -m services.timeline rebuild`: the projection is disposable, the allowed stream is the truth.

Replays the allowed stream from its beginning into a fresh generation while reads and the live
projector keep using the active one; then, holding the pointer row so no live batch can land in the
old generation, reads what arrived meanwhile and switches. Reads never see a half-built timeline.
"""

import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.timeline.domain import TimelineRow, item_of, parse_allowed, plan_batch
from services.timeline.settings import TimelineSettings
from services.timeline.store import TimelineStore
from shared.db import create_pool
from shared.kafka import create_consumer
from shared.serialization import read_allowed
from shared.topics import CUSTOMER_ALLOWED

log = logging.getLogger(__name__)


@dataclass
class Replay:
    consumer: AIOKafkaConsumer
    partitions: list[TopicPartition]
    store: TimelineStore
    generation: str
    batch_max: int
    records: int = 0
    unreadable: int = 0

    async def until_end(self) -> None:
        """Projects every record up to the partitions' current end offsets into the new generation."""
        ends = await self.consumer.end_offsets(self.partitions)
        while [tp for tp in self.partitions if await self.consumer.position(tp) < ends[tp]]:
            batches = await self.consumer.getmany(
                *self.partitions, timeout_ms=200, max_records=self.batch_max
            )
            read = [read_allowed(r.value or b"", parse_allowed, item_of) for b in batches.values() for r in b]
            # What cannot be read was parked by the live projector when it met it; the replay skips it.
            items = [item for item in read if not isinstance(item, str)]
            self.unreadable += len(read) - len(items)
            await self.store.apply_parking(plan_batch(items), self._skip, self.generation)
            self.records += len(items)

    async def _skip(self, row: TimelineRow, error: BaseException) -> None:
        """A row PostgreSQL refuses: the live projector parked it when it met it; the replay skips it."""
        self.unreadable += 1
        log.warning("row skipped", extra={"event_id": row.event_id, "error": repr(error)})


async def rebuild(settings: TimelineSettings) -> str:
    pool = await create_pool(settings.pg_dsn.get_secret_value(), max_size=4)
    topic = settings.topic(CUSTOMER_ALLOWED)
    # No group: the rebuild reads on its own and commits nothing, leaving the live projector's offsets alone.
    consumer = create_consumer(settings, group_id=None)
    await consumer.start()
    try:
        store = TimelineStore(pool)
        partitions = [TopicPartition(topic, number) for number in range(CUSTOMER_ALLOWED.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        replay = Replay(
            consumer, partitions, store, await store.create_generation(), settings.timeline_batch_max
        )
        log.info("rebuilding the timeline", extra={"generation": replay.generation})
        await replay.until_end()
        previous = await store.switch_to(replay.generation, replay.until_end)
        await store.drop_generation(previous)
        return (
            f"timeline rebuilt into {replay.generation} from {replay.records} records"
            f" ({replay.unreadable} unreadable or unstorable skipped, as the projector parked them);"
            f" {previous} dropped"
        )
    finally:
        await consumer.stop()
        await pool.close()
