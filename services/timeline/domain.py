"""Timeline rules: what a batch of allowed-stream records does to the projection, and how pages are cut."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
from pydantic import TypeAdapter

from shared.cursors import decode_cursor, encode_cursor
from shared.events import (
    AllowedRecord,
    AllowedTouch,
    EraseMarker,
    Identifier,
    ProfileSplit,
    Timestamp,
    TouchEvent,
)
from shared.purposes import may_project, must_erase
from shared.serialization import allowed_fields

PROJECTION = "timeline"


class TimelineRow(NamedTuple):
    """A stored event; a tuple, so it goes to COPY as it is."""

    customer_id: str
    occurred_at: datetime
    event_id: str
    type: str
    channel: str
    properties: str  # JSON text, as PostgreSQL's jsonb input wants it
    received_at: datetime
    source: str


class Touch(NamedTuple):
    row: TimelineRow
    purposes: frozenset[str]


class Erase(NamedTuple):
    customer_id: str
    purposes: frozenset[str]


class Detach(NamedTuple):
    """A split: these touches leave the profiles (the one split and those merged into it)."""

    customer_ids: tuple[str, ...]
    event_ids: frozenset[str]


# None: a merge notice. The timeline joins merged profiles when it reads them (shared/profiles.py), so a
# merge moves nothing here.
AllowedItem = Touch | Erase | Detach | None
MERGE_NOTICES = frozenset({"merged", "absorbed"})


def _detach(split: ProfileSplit) -> Detach:
    return Detach((split.customer_id, *split.detached_from), frozenset(split.event_ids))


def item_of(record: AllowedRecord) -> AllowedItem:
    if isinstance(record, EraseMarker):
        return Erase(record.customer_id, frozenset(record.purposes))
    if isinstance(record, AllowedTouch):
        return Touch(row_of(record.event), frozenset(record.purposes))
    if isinstance(record, ProfileSplit):
        return _detach(record)
    return None


def parse_allowed(value: bytes) -> AllowedItem:
    """An allowed-stream record straight into what the timeline stores, without building models.

    Only the consent filter writes `customer.allowed`, from records validated when they entered the
    platform. Validating again into pydantic models cost the projector more than its database write
    (about 33 us a record); this reads the same JSON in a few. A property test holds it equal to the
    validating decoder for every valid record; an unknown version is refused.
    """
    raw = allowed_fields(value)
    if raw["kind"] == "erase":
        return Erase(raw["customer_id"], frozenset(raw["purposes"]))
    if raw["kind"] in MERGE_NOTICES:
        return None
    if raw["kind"] == "split":
        return _detach(ProfileSplit.model_validate_json(value))
    return Touch(row_from_json(raw["event"]), frozenset(raw["purposes"]))


def row_from_json(event: dict[str, Any]) -> TimelineRow:
    """A touch's stored row from its JSON fields, trusted as the consent filter wrote them."""
    return TimelineRow(
        event["customer_id"],
        datetime.fromisoformat(event["occurred_at"]),
        event["event_id"],
        event["type"],
        event["channel"],
        orjson.dumps(event["properties"]).decode(),
        datetime.fromisoformat(event["received_at"]),
        event["source"],
    )


@dataclass
class BatchPlan:
    """What one batch does, in this order: delete erased customers' rows, detach split-off touches, then
    insert new rows."""

    erase: set[str] = field(default_factory=set)
    rows: dict[tuple[str, str], TimelineRow] = field(default_factory=dict)
    detach: list[Detach] = field(default_factory=list)


def row_of(event: TouchEvent) -> TimelineRow:
    return TimelineRow(
        event.customer_id,
        event.occurred_at,
        event.event_id,
        event.type,
        event.channel,
        orjson.dumps(event.properties).decode(),
        event.received_at,
        event.source,
    )


def plan_batch(items: Sequence[AllowedItem]) -> BatchPlan:
    """Folds a batch in stream order: an erase marker cancels its customer's earlier rows in the batch
    and deletes what is stored; later touches of that customer are kept."""
    plan = BatchPlan()
    for item in items:
        if isinstance(item, Erase):
            if must_erase(PROJECTION, item.purposes):
                plan.erase.add(item.customer_id)
                plan.rows = {key: row for key, row in plan.rows.items() if key[0] != item.customer_id}
        elif isinstance(item, Detach):
            plan.detach.append(item)
            plan.rows = {
                key: row
                for key, row in plan.rows.items()
                if not (key[0] in item.customer_ids and key[1] in item.event_ids)
            }
        elif item is not None and may_project(PROJECTION, item.purposes):
            plan.rows.setdefault((item.row.customer_id, item.row.event_id), item.row)
    return plan


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last (occurred_at, event_id) served, newest first."""

    occurred_at: datetime
    event_id: str

    def encode(self) -> str:
        return encode_cursor(self.occurred_at.isoformat(), self.event_id)

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        """Raises ValueError for anything this API did not hand out."""
        return cls(*decode_cursor(text, _CURSOR))


_CURSOR = TypeAdapter(tuple[Timestamp, Identifier])


@dataclass(frozen=True)
class PageQuery:
    customer_ids: tuple[str, ...]  # one person's profile ids: the survivor first, then those it absorbed
    limit: int
    after: Cursor | None
    types: frozenset[str]
    channels: frozenset[str]
    since: datetime | None
    until: datetime | None


def split_values(values: Sequence[str] | None) -> frozenset[str]:
    """`types=a,b` and `types=a&types=b` mean the same."""
    return frozenset(part.strip() for value in values or () for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class ProfileSummary:
    first_seen: datetime
    last_seen: datetime
    event_count: int
    purchase_count: int
    purchase_amount: Decimal
    by_channel: dict[str, int]
    by_type: dict[str, int]
    traits: dict[str, "Trait"]


# Touches of this type state who the person is: their properties are traits (Segment's identify calls
# arrive so, with Segment's own envelope under `segment`, which is no trait).
IDENTIFY = "identify"
ENVELOPE = "segment"


@dataclass(frozen=True)
class Trait:
    """A trait's latest value, when the person's identify touch said it, and which system said it."""

    value: Any
    at: datetime
    source: str
