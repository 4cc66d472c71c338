"""What segment tests share: allowed-stream records to feed the evaluator, and reading its changes."""

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from services.segments.evaluation import Point, matches, rounded, scaled
from shared.events import AllowedTouch, EraseMarker, Purpose, SegmentMembershipChange, TouchEvent
from shared.rules import EventFilter, MeasureFilter
from shared.serialization import decode, encode
from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_ALLOWED, SEGMENT_MEMBERSHIP
from tests.helpers import consume_until, produce

FOR_SEGMENTS = frozenset({Purpose.PROFILING, Purpose.MARKETING})


class Scan:
    """The reference history: every touch looked at for every question, in the order they came."""

    def __init__(self, points: Sequence[Point]) -> None:
        self.points = points

    def _in(self, event_filter: EventFilter, start: int, end: int) -> list[Point]:
        return [p for p in self.points if start < p.at <= end and matches(event_filter, p)]

    def count(self, event_filter: EventFilter, start: int, end: int) -> int:
        return len(self._in(event_filter, start, end))

    def extreme(self, measure: MeasureFilter, start: int, end: int, largest: bool) -> float | None:
        numbers = self.numbers(measure, start, end)
        return (max(numbers) if largest else min(numbers)) if numbers else None

    def numbers(self, measure: MeasureFilter, start: int, end: int) -> list[float]:
        values = (p.values.get(measure.property) for p in self._in(measure, start, end))
        return [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]

    def total(self, measure: MeasureFilter, start: int, end: int) -> float:
        return rounded(sum(scaled(number) for number in self.numbers(measure, start, end)))

    def next_boundary(self, windows: Sequence[int], after: int) -> int | None:
        moments = (p.at + length for p in self.points for length in (0, *windows))
        return min((moment for moment in moments if moment > after), default=None)


def allowed_touch(
    customer: str,
    event_id: str,
    type_: str,
    at: datetime,
    purposes: frozenset[Purpose] = FOR_SEGMENTS,
    channel: str = "web",
    **properties: object,
) -> tuple[bytes, bytes]:
    event = TouchEvent.model_validate(
        {
            "event_id": event_id,
            "customer_id": customer,
            "type": type_,
            "channel": channel,
            "occurred_at": at,
            "properties": properties,
            "received_at": datetime.now(UTC),
            "source": "test",
        }
    )
    return customer.encode(), encode(AllowedTouch(event=event, purposes=purposes))


def revocation(customer: str, change_id: str) -> tuple[bytes, bytes]:
    marker = EraseMarker(
        customer_id=customer,
        purposes=frozenset({Purpose.MARKETING}),
        change_id=change_id,
        at=datetime.now(UTC),
    )
    return customer.encode(), encode(marker)


async def feed(settings: TouchlineSettings, records: list[tuple[bytes, bytes]]) -> None:
    await produce(settings.kafka_bootstrap, settings.topic(CUSTOMER_ALLOWED), list(records))


async def changes_until(
    settings: TouchlineSettings, customers: set[str], count: int, timeout: float = 60.0
) -> list[SegmentMembershipChange]:
    """The first `count` membership changes of these customers, in topic order."""
    records = await consume_until(
        settings.kafka_bootstrap,
        settings.topic(SEGMENT_MEMBERSHIP),
        lambda kept: len(kept) >= count,
        keep=lambda record: (record.key or b"").decode() in customers,
        timeout=timeout,
    )
    return [decode(SegmentMembershipChange, record.value or b"") for record in records]


async def evaluated_position(dsn: str, topic: str) -> int:
    """How far the evaluator has committed into the allowed stream: the sum of its tracking rows."""
    connection = await asyncpg.connect(dsn)
    try:
        position: int = await connection.fetchval(
            "SELECT coalesce(sum(next_offset), 0) FROM segment_offsets WHERE topic = $1", topic
        )
        return position
    finally:
        await connection.close()
