"""The consent filter's rules: which purposes each touch may be used for, and when projections must erase.

State per customer is a short history of consent changes, each tagged with its customer-log offset, and
every touch is judged by the consent in force at its own offset. After a crash, Faust replays records
since the last committed offset against a table that may already hold later changes; judging by offset
makes that replay produce exactly the same decisions as the first pass (guarantee G3).
"""

import uuid
from bisect import bisect_left
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from operator import itemgetter
from typing import Any, Literal, NamedTuple

import orjson

from shared.events import (
    IDENTIFIER,
    AbsorbedMarker,
    AllowedTouch,
    ConsentChange,
    ConsentStatus,
    CustomerLogRecord,
    EraseMarker,
    ProfileAbsorbed,
    ProfileMerged,
    ProfileSplit,
    Purpose,
    TouchEvent,
)
from shared.purposes import erasure_of
from shared.serialization import decode_customer_log

# Older changes collapse into one entry at BEFORE_EVERYTHING. A replay reaches back one commit interval
# (about a second), so only a customer changing one purpose more than this often within it could be
# judged by a collapsed entry.
CHANGES_KEPT_PER_PURPOSE = 32
BEFORE_EVERYTHING = -1
MERGE_SOURCE = "identity-merge"

ConsentState = Mapping[str, Sequence[tuple[int, str]]]
Defaults = Mapping[Purpose, ConsentStatus]


class LoggedTouch(NamedTuple):
    """A touch as the customer log holds it: forwarded as logged, with no model built in between."""

    customer_id: str
    event_json: bytes


class ForwardedTouch(NamedTuple):
    """A logged touch on its way to the allowed stream, with the purposes consent allows."""

    customer_id: str
    event_json: bytes
    purposes: frozenset[Purpose]

    def wire(self) -> bytes:
        """The AllowedTouch record, spliced around the logged event's own bytes."""
        purposes = _purposes_json(self.purposes)
        return (
            b'{"schema_version":1,"kind":"allowed","event":'
            + self.event_json
            + b',"purposes":'
            + purposes
            + b"}"
        )


@cache
def _purposes_json(purposes: frozenset[Purpose]) -> bytes:
    """One of the few purpose sets, encoded once: this runs for nearly every record."""
    return orjson.dumps(sorted(purposes))


AllowedOutput = AllowedTouch | ForwardedTouch | EraseMarker | ProfileMerged | AbsorbedMarker | ProfileSplit
# What a record sends back to the customer log, for another customer: a merge's carried-over denials.
Output = AllowedOutput | ConsentChange
LogItem = CustomerLogRecord | LoggedTouch
# Version 2 adds only `identities`, which the filter forwards untouched.
_TOUCH_VERSIONS = (1, 2)
_TOUCH_FIELDS = frozenset(
    {"event_id", "customer_id", "type", "channel", "occurred_at", "received_at", "source"}
)


def read_logged(value: bytes) -> LogItem:
    """A customer-log record for the filter. Touches, nearly every record, are only checked for what the
    filter decides by (kind, version, customer) and forwarded as they are: ingest validated them, and
    validating again cost the filter more than all else it does (about 30 us a touch). Anything else
    goes through the validating decoder, which raises pydantic's ValidationError for what it refuses."""
    try:
        raw = orjson.loads(value)
        if (
            raw.get("kind") == "touch"
            and raw.get("schema_version") in _TOUCH_VERSIONS
            and raw.keys() >= _TOUCH_FIELDS
            and isinstance(raw["customer_id"], str)
            and IDENTIFIER.fullmatch(raw["customer_id"])
        ):
            return LoggedTouch(raw["customer_id"], value)
    except (orjson.JSONDecodeError, AttributeError):
        pass
    return decode_customer_log(value)


@dataclass(frozen=True)
class Decision:
    state: ConsentState
    outputs: Sequence[Output]


def load_state(raw: Any) -> ConsentState:
    """The table's JSON form (lists) as a state; an unknown customer has no changes."""
    return {
        purpose: [(int(offset), str(status)) for offset, status in entries]
        for purpose, entries in (raw or {}).items()
    }


# Iterating the enum class and calling ConsentStatus() per touch were an eighth of the filter's CPU.
_PURPOSES = tuple(Purpose)
_STATUSES = {status.value: status for status in ConsentStatus}


def status_at(state: ConsentState, purpose: Purpose, offset: int, defaults: Defaults) -> ConsentStatus:
    """The consent for `purpose` in force for a record at `offset`: the last change before it."""
    entries = state.get(purpose.value)
    if not entries:
        return defaults[purpose]
    # Nearly every record comes after all its customer's changes: the newest is looked at first.
    if entries[-1][0] < offset:
        return _STATUSES[entries[-1][1]]
    before = bisect_left(entries, offset, key=itemgetter(0))
    return _STATUSES[entries[before - 1][1]] if before else defaults[purpose]


def allowed_purposes(state: ConsentState, offset: int, defaults: Defaults) -> frozenset[Purpose]:
    granted = ConsentStatus.GRANTED
    return frozenset(
        purpose for purpose in _PURPOSES if status_at(state, purpose, offset, defaults) is granted
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


def _judge_touch(
    touch: TouchEvent | LoggedTouch, offset: int, state: ConsentState, defaults: Defaults
) -> Decision:
    return Decision(state, _forwarded(touch, allowed_purposes(state, offset, defaults)))


def _forwarded(touch: TouchEvent | LoggedTouch, purposes: frozenset[Purpose]) -> list[AllowedOutput]:
    """What a touch sends to the allowed stream: itself with the purposes allowed, or nothing."""
    if not purposes:
        return []
    if isinstance(touch, LoggedTouch):
        return [ForwardedTouch(touch.customer_id, touch.event_json, purposes)]
    return [AllowedTouch(event=touch, purposes=purposes)]


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


def explicit_denials(state: ConsentState, offset: int) -> list[Purpose]:
    """The purposes whose last change the customer made before `offset` was a denial."""
    denied = []
    for purpose in Purpose:
        before = [status for change_offset, status in state.get(purpose.value, ()) if change_offset < offset]
        if before and before[-1] == ConsentStatus.DENIED.value:
            denied.append(purpose)
    return denied


def _carry_over(merge: ProfileMerged, offset: int, state: ConsentState) -> Decision:
    """A denial the absorbed profile stated holds for the person: it becomes the survivor's, logged in the
    survivor's order. What the absorbed side left to the defaults does not override the survivor.

    The merge itself goes on to the allowed stream, the absorbed profile's last record there too: it
    seals what projections hold of it."""
    denials = [
        ConsentChange(
            change_id=f"{merge.change_id}:{purpose.value}",
            customer_id=merge.survivor,
            purpose=purpose,
            status=ConsentStatus.DENIED,
            changed_at=merge.at,
            source=MERGE_SOURCE,
        )
        for purpose in explicit_denials(state, offset)
    ]
    return Decision(state, [*denials, merge])


def _judge_absorption(
    absorption: ProfileAbsorbed, offset: int, state: ConsentState, defaults: Defaults
) -> Decision:
    """The survivor's side of a merge, with what the survivor allows here: a projection takes the absorbed
    profile's state over only for purposes both sides allow (the absorbed side's own consent already
    shaped that state)."""
    marker = AbsorbedMarker(
        change_id=absorption.change_id,
        customer_id=absorption.customer_id,
        absorbed=absorption.absorbed,
        at=absorption.at,
        purposes=allowed_purposes(state, offset, defaults),
    )
    return Decision(state, [marker])


def filter_record(record: LogItem, offset: int, state: ConsentState, defaults: Defaults) -> Decision:
    """One customer-log record at `offset`: the customer's new state and what it sends on."""
    if isinstance(record, (TouchEvent, LoggedTouch)):  # a tuple: a union would be built per record
        return _judge_touch(record, offset, state, defaults)
    if isinstance(record, ProfileMerged):
        return _carry_over(record, offset, state)
    if isinstance(record, ProfileAbsorbed):
        return _judge_absorption(record, offset, state, defaults)
    if isinstance(record, ProfileSplit):
        # Each side keeps what it stated: the touches logged again for the split-off profile are judged
        # by its own consent; projections drop them here whatever this profile's consent is.
        return Decision(state, [record])
    return _apply_change(record, offset, state)


def state_of(changes: Iterable[tuple[Purpose, ConsentStatus, int]]) -> ConsentState:
    """A customer's state rebuilt from their stored changes (purpose, status, log offset), any order."""
    state: ConsentState = {}
    for purpose, status, offset in sorted(changes, key=lambda change: change[2]):
        state = with_change(state, purpose, status, offset)
    return state


def filter_batch(
    records: Sequence[tuple[int, LogItem]],
    states: MutableMapping[str, ConsentState],
    defaults: Defaults,
) -> list[Sequence[Output]]:
    """One partition's records (offset, record) in log order: each record's outputs; `states` updated."""
    # Most customers never stated anything: their touches are judged by the defaults alone.
    by_default = allowed_purposes({}, 0, defaults)
    outputs: list[Sequence[Output]] = []
    for offset, record in records:
        state = states.get(record.customer_id)
        if not state and isinstance(record, LoggedTouch):
            outputs.append(_forwarded(record, by_default))
            continue
        decision = filter_record(record, offset, state or {}, defaults)
        states[record.customer_id] = decision.state
        outputs.append(decision.outputs)
    return outputs


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
    return erasure_id, erasure_of(customer_id, erasure_id, at, source)
