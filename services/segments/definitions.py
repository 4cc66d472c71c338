"""The segment definitions every evaluator process follows: the whole segment.definitions topic, in memory."""

import asyncio
import logging

from aiokafka import TopicPartition
from pydantic import ValidationError

from services.segments.evaluation import Definitions, with_definition
from services.segments.metrics import UNREADABLE
from services.segments.settings import SegmentsSettings
from shared.kafka import create_consumer
from shared.rules import SegmentDefinition
from shared.serialization import decode
from shared.topics import SEGMENT_DEFINITIONS

log = logging.getLogger(__name__)


class DefinitionsFeed:
    """Every segment definition, read by each worker from the whole segment.definitions topic."""

    def __init__(self) -> None:
        self.definitions = Definitions()
        self.loaded = asyncio.Event()  # read up to where the topic ended at start-up
        self.changed = asyncio.Event()
        self._advanced = asyncio.Condition()

    async def reached(self, revision: int) -> None:
        async with self._advanced:
            await self._advanced.wait_for(lambda: self.definitions.revision >= revision)

    async def follow(self, settings: SegmentsSettings) -> None:
        partition = TopicPartition(settings.topic(SEGMENT_DEFINITIONS), 0)
        consumer = create_consumer(settings, group_id=None)
        consumer.assign([partition])
        await consumer.start()
        try:
            await consumer.seek_to_beginning(partition)
            end = (await consumer.end_offsets([partition]))[partition]
            while True:
                for record in (await consumer.getmany(partition, timeout_ms=500)).get(partition, []):
                    await self._apply(record.value or b"", record.offset)
                if await consumer.position(partition) >= end:
                    self.loaded.set()
        finally:
            await consumer.stop()

    async def _apply(self, value: bytes, offset: int) -> None:
        try:
            definition = decode(SegmentDefinition, value)
        except ValidationError as error:
            # Only the segments API writes this topic: a record it cannot read is a bug to see, not stop on.
            UNREADABLE.inc()
            log.error("unreadable segment definition", extra={"offset": offset, "error": str(error)})
            return
        async with self._advanced:
            self.definitions = with_definition(self.definitions, definition, offset)
            self._advanced.notify_all()
        self.changed.set()
