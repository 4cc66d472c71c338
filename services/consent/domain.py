"""The consent filter's rules: which purposes each touch may be used for, and when projections must erase.

State per customer is a short history of consent changes, each tagged with its customer-log offset, and
every touch is judged by the consent in force at its own offset. After a crash, Faust replays records
since the last committed offset against a table that may already hold later changes; judging by offset
makes that replay produce exactly the same decisions as the first pass (guarantee G3).
"""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from shared.events import (
    AllowedTouch,
    ConsentChange,
    ConsentStatus,
    CustomerLogRecord,
    EraseMarker,
    Purpose,
    TouchEvent,
)

# Older changes collapse into one entry at BEFORE_EVERYTHING. A replay reaches back one commit interval
# (about a second), so only a customer changing one purpose more than this often within it could be
# judged by a collapsed entry.
CHANGES_KEPT_PER_PURPOSE = 32
BEFORE_EVERYTHING = -1

ConsentState = Mapping[str, Sequence[tuple[int, str]]]
Defaults = Mapping[Purpose, ConsentStatus]
AllowedOutput = AllowedTouch | EraseMarker


@dataclass(frozen=True)
class Decision:
    state: ConsentState
    outputs: list[AllowedOutput]


def load_state(raw: Any) -> ConsentState:
    """The table's JSON form (lists) as a state; an unknown customer has no changes."""
    return {
        purpose: [(int(offset), str(status)) for offset, status in entries]
        for purpose, entries in (raw or {}).items()
    }


def status_at(state: ConsentState, purpose: Purpose, offset: int, defaults: Defaults) -> ConsentStatus:
    """The consent for `purpose` in force for a record at `offset`: the last change before it."""
    status = defaults[purpose]
    for change_offset, change_status in state.get(purpose.value, ()):
        if change_offset >= offset:
            break
        status = ConsentStatus(change_status)
    return status


def allowed_purposes(state: ConsentState, offset: int, defaults: Defaults) -> frozenset[Purpose]:
    return frozenset(
        purpose for purpose in Purpose if status_at(state, purpose, offset, defaults) is ConsentStatus.GRANTED
    )


def with_change(state: ConsentState, purpose: Purpose, status: ConsentStatus, offset: int) -> ConsentState:
    """`state` plus one change; applying the change at the same offset again changes nothing."""
    entries = sorted(
        [*(entry for entry in state.get(purpose.value, ()) if entry[0] != offset), (offset, status.value)]
    )
    if len(entries) > CHANGES_KEPT_PER_PURPOSE:
        newest_collapsed = entries[-CHANGES_KEPT_PER_PURPOSE - 1]
        entries = [(BEFORE_EVERYTHING, newest_collapsed[1]), *entries[-CHANGES_KEPT_PER_PURPOSE:]]
    return {**state, purpose.value: entries}


def _judge_touch(event: TouchEvent, offset: int, state: ConsentState, defaults: Defaults) -> Decision:
    purposes = allowed_purposes(state, offset, defaults)
    return Decision(state, [AllowedTouch(event=event, purposes=purposes)] if purposes else [])


def _apply_change(change: ConsentChange, offset: int, state: ConsentState) -> Decision:
    new_state = with_change(state, change.purpose, change.status, offset)
    if change.status is ConsentStatus.GRANTED:
        return Decision(new_state, [])
    # Emitted on every denial, even a repeated one: deleting is idempotent, and after a crash the first
    # marker may never have reached the broker.
    marker = EraseMarker(
        customer_id=change.customer_id,
        purposes=frozenset({change.purpose}),
        change_id=change.change_id,
        at=change.changed_at,
        erasure=change.erasure,
    )
    return Decision(new_state, [marker])


def filter_record(
    record: CustomerLogRecord, offset: int, state: ConsentState, defaults: Defaults
) -> Decision:
    """One customer-log record at `offset`: the customer's new state and what goes to the allowed stream."""
    if isinstance(record, TouchEvent):
        return _judge_touch(record, offset, state, defaults)
    return _apply_change(record, offset, state)


@dataclass(frozen=True)
class RecordedChange:
    """A consent change as the audit trail keeps it."""

    change_id: str
    purpose: Purpose
    status: ConsentStatus
    changed_at: datetime
    source: str
    erasure: bool
    log_offset: int


@dataclass(frozen=True)
class PurposeConsent:
    status: ConsentStatus
    origin: Literal["default", "explicit"]
    change: RecordedChange | None


def current_consent(latest: Sequence[RecordedChange], defaults: Defaults) -> dict[Purpose, PurposeConsent]:
    """Every purpose's status now: the latest explicit change, or the configured default."""
    explicit = {change.purpose: change for change in latest}
    return {
        purpose: PurposeConsent(explicit[purpose].status, "explicit", explicit[purpose])
        if purpose in explicit
        else PurposeConsent(defaults[purpose], "default", None)
        for purpose in Purpose
    }


def consent_change(
    customer_id: str, purpose: Purpose, status: ConsentStatus, at: datetime, source: str
) -> ConsentChange:
    return ConsentChange(
        change_id=f"consent-{uuid.uuid4()}",
        customer_id=customer_id,
        purpose=purpose,
        status=status,
        changed_at=at,
        source=source,
    )


def erasure_changes(customer_id: str, at: datetime, source: str) -> tuple[str, list[ConsentChange]]:
    """The right to be forgotten: every purpose denied, in one go, each change marked as an erasure."""
    erasure_id = f"erasure-{uuid.uuid4()}"
    changes = [
        ConsentChange(
            change_id=f"{erasure_id}:{purpose.value}",
            customer_id=customer_id,
            purpose=purpose,
            status=ConsentStatus.DENIED,
            changed_at=at,
            source=source,
            erasure=True,
        )
        for purpose in Purpose
    ]
    return erasure_id, changes
