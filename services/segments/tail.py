"""`python -m services.segments tail SEGMENT_ID`: one segment's membership changes, live, in the terminal.

It reads `segment.membership` the way a campaign tool should (see README.md): every partition, committed
records only, and each change_id once, so a change the relay re-published after a crash prints once.
"""

import argparse
import asyncio
import contextlib
import sys
from collections import OrderedDict
from collections.abc import Sequence
from typing import TextIO

from aiokafka import TopicPartition
from pydantic import ValidationError

from shared.events import SegmentMembershipChange
from shared.kafka import create_consumer
from shared.serialization import decode
from shared.settings import TouchlineSettings
from shared.topics import SEGMENT_MEMBERSHIP

REMEMBERED_CHANGE_IDS = 100_000


class SeenChanges:
    """The most recent change ids, to drop redelivered copies without growing forever."""

    def __init__(self, capacity: int = REMEMBERED_CHANGE_IDS) -> None:
        self.capacity, self.ids = capacity, OrderedDict[str, None]()

    def first_time(self, change_id: str) -> bool:
        if change_id in self.ids:
            return False
        self.ids[change_id] = None
        if len(self.ids) > self.capacity:
            self.ids.popitem(last=False)
        return True


def line(change: SegmentMembershipChange) -> str:
    return (
        f"{change.at.isoformat(timespec='milliseconds')}  {change.transition.value:<7}  {change.customer_id}"
        f"  v{change.segment_version}  {change.reason.value}\n"
    )


async def tail(
    settings: TouchlineSettings, segment_id: str, from_beginning: bool, as_json: bool, out: TextIO
) -> None:
    consumer = create_consumer(settings, group_id=None)
    await consumer.start()
    try:
        topic = settings.topic(SEGMENT_MEMBERSHIP)
        partitions = [TopicPartition(topic, p) for p in range(SEGMENT_MEMBERSHIP.partitions)]
        consumer.assign(partitions)
        await (consumer.seek_to_beginning if from_beginning else consumer.seek_to_end)(*partitions)
        seen = SeenChanges()
        async for record in consumer:
            try:
                change = decode(SegmentMembershipChange, record.value or b"")
            except ValidationError as error:
                sys.stderr.write(f"unreadable record at {record.partition}/{record.offset}: {error}\n")
                continue
            if change.segment_id == segment_id and seen.first_time(change.change_id):
                out.write((change.model_dump_json() + "\n") if as_json else line(change))
                out.flush()
    finally:
        await consumer.stop()


def tail_command(settings: TouchlineSettings, arguments: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.segments tail", description=__doc__)
    parser.add_argument("segment_id")
    parser.add_argument("--from-beginning", action="store_true", help="replay the retained changes first")
    parser.add_argument("--json", action="store_true", help="one SegmentMembershipChange JSON per line")
    parsed = parser.parse_args(arguments)
    sys.stderr.write(f"changes of segment {parsed.segment_id!r} (Ctrl-C to stop)\n")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(tail(settings, parsed.segment_id, parsed.from_beginning, parsed.json, sys.stdout))
