"""Reference models for the consent guarantees, shared by the consent, timeline and segments tests.

`ProjectionModel` is what any projection must end up holding after applying allowed-stream records;
`expected_holdings` computes the same thing straight from the customer log, without the filter, so a
test compares the two.
"""

from collections.abc import Iterable, Mapping, Sequence

from shared.events import (
    AllowedRecord,
    AllowedTouch,
    ConsentChange,
    ConsentStatus,
    CustomerLogRecord,
    EraseMarker,
    ProfileSplit,
    Purpose,
    TouchEvent,
)
from shared.purposes import PROJECTION_PURPOSES, may_project, must_erase


class ProjectionModel:
    """An idempotent projection needing `projection`'s purposes: event ids held per customer."""

    def __init__(self, projection: str) -> None:
        self.projection = projection
        self.held: dict[str, set[str]] = {}

    def apply(self, record: AllowedRecord) -> None:
        """Holdings per profile, as logged: merge notices move nothing here (the timeline joins merged
        profiles when it reads them; segments' merges are checked in their own tests)."""
        if isinstance(record, AllowedTouch):
            if may_project(self.projection, record.purposes):
                self.held.setdefault(record.event.customer_id, set()).add(record.event.event_id)
        elif isinstance(record, EraseMarker) and must_erase(self.projection, record.purposes):
            self.held.pop(record.customer_id, None)
        elif isinstance(record, ProfileSplit):
            _detach(self.held, record)

    def apply_all(self, records: Iterable[AllowedRecord]) -> "ProjectionModel":
        for record in records:
            self.apply(record)
        return self

    def holdings(self) -> dict[str, set[str]]:
        return {customer: events for customer, events in self.held.items() if events}


def expected_holdings(
    log: Sequence[CustomerLogRecord], projection: str, defaults: Mapping[Purpose, ConsentStatus]
) -> dict[str, set[str]]:
    """G1 and G2 as a definition: a touch is held iff every needed purpose was granted when it was
    logged and none of them was withdrawn after it."""
    needed = PROJECTION_PURPOSES[projection]
    consent: dict[tuple[str, Purpose], ConsentStatus] = {}
    held: dict[str, set[str]] = {}
    for record in log:
        if isinstance(record, TouchEvent):
            if all(
                consent.get((record.customer_id, p), defaults[p]) is ConsentStatus.GRANTED for p in needed
            ):
                held.setdefault(record.customer_id, set()).add(record.event_id)
        elif isinstance(record, ConsentChange):
            consent[(record.customer_id, record.purpose)] = record.status
            if record.status is ConsentStatus.DENIED and record.purpose in needed:
                held.pop(record.customer_id, None)
        elif isinstance(record, ProfileSplit):
            _detach(held, record)
    return {customer: events for customer, events in held.items() if events}


def _detach(held: dict[str, set[str]], split: ProfileSplit) -> None:
    """A split's touches leave the profiles it names (they are logged again for the split-off one)."""
    for customer in (split.customer_id, *split.detached_from):
        held.get(customer, set()).difference_update(split.event_ids)


def expected_purposes(
    log: Sequence[CustomerLogRecord], defaults: Mapping[Purpose, ConsentStatus]
) -> dict[str, frozenset[Purpose]]:
    """G1 as a definition: the purposes each touch may be used for, by event id."""
    consent: dict[tuple[str, Purpose], ConsentStatus] = {}
    purposes = {}
    for record in log:
        if isinstance(record, ConsentChange):
            consent[(record.customer_id, record.purpose)] = record.status
        elif isinstance(record, TouchEvent):
            purposes[record.event_id] = frozenset(
                p
                for p in Purpose
                if consent.get((record.customer_id, p), defaults[p]) is ConsentStatus.GRANTED
            )
    return purposes
