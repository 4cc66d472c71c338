"""Segment membership decisions: a customer's state in, their new state and membership changes out.

Every path (a touch, a timer, a definition change, a consent revocation) first *settles* the customer:
it walks the boundaries passed since their last evaluation, so a window that slid past while nothing
happened still yields its exit at the exact moment, then catches up with definitions changed since.
"""

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import NamedTuple

from services.segments.digest import Digest
from services.segments.evaluation import (
    MICROS,
    Definitions,
    Point,
    Segment,
    fingerprint,
    holds,
)
from shared.events import (
    AbsorbedMarker,
    AllowedRecord,
    EraseMarker,
    MembershipReason,
    MembershipTransition,
    ProfileMerged,
    ProfileSplit,
    TouchEvent,
)
from shared.purposes import may_project, must_erase
from shared.serialization import allowed_fields, decode_allowed

PROJECTION = "segments"
# A tuple, not `str | int | float | bool`: that union is built anew on every evaluation, five times slower.
SCALARS = (str, int, float, bool)
IDENTITY_MERGED = MembershipReason.IDENTITY_MERGED


@dataclass(frozen=True)
class CustomerState:
    customer_id: str
    points: Digest  # updated in place by a touch (see digest.py)
    members: Mapping[str, int]  # segment id -> the version in force when last evaluated
    evaluated_at: int
    revision: int  # the definitions revision they were last evaluated against


class Change(NamedTuple):
    segment_id: str
    version: int
    customer_id: str
    transition: MembershipTransition
    at: int
    reason: MembershipReason

    @property
    def change_id(self) -> str:
        """The same change always gets the same id, so consumers can drop a redelivered copy."""
        fields = (self.segment_id, self.version, self.customer_id, self.transition, self.at, self.reason)
        parts = "|".join(map(str, fields))
        return hashlib.sha256(parts.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Outcome:
    state: CustomerState | None  # None: forget the customer
    changes: list[Change] = field(default_factory=list)
    evaluations: int = 0


Step = Callable[[CustomerState], Outcome]


def chain(state: CustomerState, *steps: Step) -> Outcome:
    """Runs each step on the state the previous one left, gathering their changes."""
    changes, evaluations, current = [], 0, state
    for step in steps:
        outcome = step(current)
        changes += outcome.changes
        evaluations += outcome.evaluations
        if outcome.state is None:
            return Outcome(None, changes, evaluations)
        current = outcome.state
    return Outcome(current, changes, evaluations)


def reconcile(segments: Sequence[Segment], at: int, reason: MembershipReason) -> Step:
    """Evaluates `segments` at `at` and records who entered and who left."""

    def step(state: CustomerState) -> Outcome:
        members, changes = dict(state.members), []
        for segment in segments:
            is_member = not segment.deleted and holds(segment.rule, state.points, at)
            was_member = segment.segment_id in members
            if is_member:
                members[segment.segment_id] = segment.version
            else:
                members.pop(segment.segment_id, None)
            if is_member != was_member:
                transition = MembershipTransition.ENTERED if is_member else MembershipTransition.EXITED
                changes.append(
                    Change(segment.segment_id, segment.version, state.customer_id, transition, at, reason)
                )
        evaluated_at = max(at, state.evaluated_at)
        return Outcome(replace(state, members=members, evaluated_at=evaluated_at), changes, len(segments))

    return step


def _pass_boundaries(definitions: Definitions, now: int) -> Step:
    def step(state: CustomerState) -> Outcome:
        # Segments changed since the customer's last evaluation are judged at `now` only, by the new rule.
        known = [s for s in definitions.live() if s.changed_revision <= state.revision]
        windows, steps = definitions.windows(), []
        moment = state.evaluated_at
        while (boundary := state.points.next_boundary(windows, moment)) is not None and boundary <= now:
            steps.append(reconcile(known, boundary, MembershipReason.WINDOW_EXPIRED))
            moment = boundary
        return chain(state, *steps)

    return step


def _catch_up_definitions(definitions: Definitions, now: int) -> Step:
    def step(state: CustomerState) -> Outcome:
        changed = definitions.changed_since(state.revision)
        edited = [s for s in changed if not s.deleted]
        deleted = [s for s in changed if s.deleted]
        caught_up = replace(state, revision=definitions.revision)
        return chain(
            caught_up,
            reconcile(edited, now, MembershipReason.DEFINITION_CHANGED),
            reconcile(deleted, now, MembershipReason.SEGMENT_DELETED),
        )

    return step


def settle(state: CustomerState, definitions: Definitions, now: int) -> Outcome:
    """Brings a customer to `now`: boundaries passed since their last evaluation, then new definitions.

    This is the timer's step and the backfill's step; a touch and an erasure settle first too.
    """
    return chain(
        state,
        _pass_boundaries(definitions, now),
        _catch_up_definitions(definitions, now),
        lambda settled: Outcome(replace(settled, evaluated_at=max(settled.evaluated_at, now))),
    )


def on_touch(
    state: CustomerState | None,
    definitions: Definitions,
    touch: Point,
    customer_id: str,
    now: int,
    horizon: int,
) -> Outcome:
    """A touch allowed for segments: stored in the digest, and the segments reading its type evaluated."""
    if state is None:
        fresh = CustomerState(customer_id, Digest(), {}, now, definitions.revision)
        return chain(
            fresh, _remember(touch, now, horizon), reconcile(definitions.live(), now, MembershipReason.EVENT)
        )
    return chain(
        state,
        lambda current: settle(current, definitions, now),
        _remember(touch, now, horizon),
        reconcile(definitions.affected_by(touch.type), now, MembershipReason.EVENT),
    )


def _remember(touch: Point, now: int, horizon: int) -> Step:
    def step(state: CustomerState) -> Outcome:
        state.points.expire(now - horizon)
        state.points.add(touch, now - horizon)
        return Outcome(state)

    return step


def on_revocation(state: CustomerState | None, definitions: Definitions, now: int) -> Outcome:
    """Consent for profiling or marketing withdrawn: the customer leaves every segment and is forgotten."""
    if state is None:
        return Outcome(None)

    return chain(
        state,
        lambda current: settle(current, definitions, now),
        _leave_all(now, MembershipReason.CONSENT_REVOKED),
    )


def _leave_all(now: int, reason: MembershipReason) -> Step:
    """The customer exits every segment and is forgotten."""

    def step(settled: CustomerState) -> Outcome:
        changes = [
            Change(segment_id, version, settled.customer_id, MembershipTransition.EXITED, now, reason)
            for segment_id, version in sorted(settled.members.items())
        ]
        return Outcome(None, changes)

    return step


def on_merge(
    absorbed: CustomerState | None,
    survivor: CustomerState | None,
    merge: "MergeNotice",
    definitions: Definitions,
    now: int,
    horizon: int,
) -> tuple[Outcome, Outcome]:
    """An identity merge, once both sides are in: the absorbed profile leaves its segments and is
    forgotten; its touches join the survivor's digest, which is evaluated over the joined history.

    Only when the survivor's consent lets segments use it (`merge.allowed`): otherwise the absorbed touches
    go with the absorbed profile, and the survivor stays as it was. Returns (absorbed, survivor) outcomes.
    """

    if absorbed is None:
        return Outcome(None), Outcome(survivor)
    leaving = chain(
        absorbed, lambda current: settle(current, definitions, now), _leave_all(now, IDENTITY_MERGED)
    )
    if not merge.allowed:
        return leaving, Outcome(survivor)
    joining = survivor or CustomerState(merge.survivor, Digest(), {}, now, definitions.revision)
    taken = absorbed.points.points

    def take_over(settled: CustomerState) -> Outcome:
        settled.points.expire(now - horizon)
        for point in taken:
            settled.points.add(point, now - horizon)
        return Outcome(settled)

    joined = chain(
        joining,
        lambda current: settle(current, definitions, now),
        take_over,
        reconcile(definitions.live(), now, IDENTITY_MERGED),
    )
    return leaving, joined


def on_split(
    state: CustomerState | None, keys: frozenset[int], definitions: Definitions, now: int
) -> Outcome:
    """Touches split off with an identifier leave the profile's digest, which is evaluated again over what
    it keeps (the touches are logged again for the profile they go to, and count there)."""
    if state is None:
        return Outcome(None)

    def drop(settled: CustomerState) -> Outcome:
        kept = [point for point in settled.points.points if point.key not in keys]
        return Outcome(replace(settled, points=Digest(recent=kept)))

    return chain(
        state,
        lambda current: settle(current, definitions, now),
        drop,
        reconcile(definitions.live(), now, MembershipReason.IDENTITY_SPLIT),
    )


def next_change_at(state: CustomerState, definitions: Definitions) -> int | None:
    """When the timer must wake this customer: their next boundary."""
    return state.points.next_boundary(definitions.windows(), state.evaluated_at)


def point_of(event: TouchEvent, properties: frozenset[str]) -> Point:
    """A touch reduced to what rules can reference; only scalar values of referenced properties are kept."""
    return _point(event.event_id, event.occurred_at, event.type, event.channel, event.properties, properties)


def _point(
    event_id: str,
    occurred_at: datetime,
    type_: str,
    channel: str,
    event_properties: Mapping[str, object],
    properties: frozenset[str],
) -> Point:
    values = {
        name: value
        for name, value in event_properties.items()
        if name in properties and isinstance(value, SCALARS)
    }
    at = int(occurred_at.timestamp()) * MICROS + occurred_at.microsecond
    return Point(at, fingerprint(event_id), type_, channel, values)


class AllowedItem(NamedTuple):
    """An allowed-stream record as the evaluator needs it."""

    customer_id: str
    purposes: frozenset[str]
    touch: Point | None  # None: an erase marker
    received_at: datetime | None
    erasure: bool = False  # an erase marker of the right to be forgotten, not a mere revocation


class MergeNotice(NamedTuple):
    """One side of an identity merge on the allowed stream. The absorbed side (`sealed`) is the absorbed
    profile's last record there; the survivor's side says whether the survivor's consent lets segments
    take the absorbed touches over. The merge is carried out when the second side arrives."""

    absorbed: str
    survivor: str
    sealed: bool
    allowed: bool

    @property
    def customer_id(self) -> str:
        """The profile on whose partition this side arrives."""
        return self.absorbed if self.sealed else self.survivor


class SplitNotice(NamedTuple):
    """An identifier was split off the profile, and these touches (by key) went with it."""

    customer_id: str
    split_off: str
    keys: frozenset[int]


# What the evaluator reads off the allowed stream.
Item = AllowedItem | MergeNotice | SplitNotice
IDENTITY_NOTICES = ("merged", "absorbed", "split")


def item_of(record: AllowedRecord, properties: frozenset[str]) -> Item:
    if isinstance(record, ProfileSplit):
        keys = frozenset(fingerprint(event_id) for event_id in record.event_ids)
        return SplitNotice(record.customer_id, record.split_off, keys)
    if isinstance(record, ProfileMerged):
        return MergeNotice(record.customer_id, record.survivor, sealed=True, allowed=True)
    if isinstance(record, AbsorbedMarker):
        allowed = may_project(PROJECTION, frozenset(record.purposes))
        return MergeNotice(record.absorbed, record.customer_id, sealed=False, allowed=allowed)
    if isinstance(record, EraseMarker):
        return AllowedItem(record.customer_id, frozenset(record.purposes), None, None, record.erasure)
    event = record.event
    return AllowedItem(
        event.customer_id, frozenset(record.purposes), point_of(event, properties), event.received_at
    )


def parse_allowed(value: bytes, properties: frozenset[str]) -> Item:
    """An allowed-stream record straight into what the evaluator needs, without building models.

    Only the consent filter writes `customer.allowed`, from records validated on entry; validating them
    again cost more than evaluating them. A property test holds this equal to the validating decoder
    (`item_of`) for every valid record; an unknown version is refused, and the caller falls back.
    """
    raw = allowed_fields(value)
    if raw["kind"] in IDENTITY_NOTICES:  # rare: read through the models
        return item_of(decode_allowed(value), properties)
    if raw["kind"] == "erase":
        return AllowedItem(
            raw["customer_id"], frozenset(raw["purposes"]), None, None, raw.get("erasure", False)
        )
    event = raw["event"]
    touch = _point(
        event["event_id"],
        datetime.fromisoformat(event["occurred_at"]),
        event["type"],
        event["channel"],
        event["properties"],
        properties,
    )
    return AllowedItem(
        event["customer_id"], frozenset(raw["purposes"]), touch, datetime.fromisoformat(event["received_at"])
    )


class BatchInputs(NamedTuple):
    per_customer: dict[str, list["Input"]]  # each customer's inputs in order
    received: dict[int, datetime]  # per instant of a touch, when it reached Touchline
    erased: set[str]  # customers who asked to be forgotten: their membership history goes too


def inputs_of(items: Sequence[AllowedItem], now: Callable[[], int]) -> BatchInputs:
    """Each customer's inputs, each at its own instant from `now()`. Consent decides through
    shared/purposes.py: a touch counts only when segments may use it, an erase marker only when it
    withdraws what segments need."""
    inputs = BatchInputs({}, {}, set())
    for item in items:
        if item.touch is not None and may_project(PROJECTION, item.purposes):
            instant = now()
            if item.received_at is not None:
                inputs.received[instant] = item.received_at
            inputs.per_customer.setdefault(item.customer_id, []).append(Input(instant, item.touch))
        elif item.touch is None and must_erase(PROJECTION, item.purposes):
            inputs.per_customer.setdefault(item.customer_id, []).append(Input(now(), None))
            if item.erasure:
                inputs.erased.add(item.customer_id)
    return inputs


class Input(NamedTuple):
    """One allowed-stream record for a customer, at the instant the evaluator handles it."""

    now: int
    touch: Point | None  # None: consent for segments was withdrawn


def decide(
    state: CustomerState | None,
    customer_id: str,
    inputs: Sequence[Input],
    definitions: Definitions,
    horizon: int,
) -> Outcome:
    """One customer's records of a batch, in order: their final state and every change on the way."""
    changes: list[Change] = []
    evaluations = 0
    for record in inputs:
        if record.touch is None:
            outcome = on_revocation(state, definitions, record.now)
        else:
            outcome = on_touch(state, definitions, record.touch, customer_id, record.now, horizon)
        state, evaluations = outcome.state, evaluations + outcome.evaluations
        changes += outcome.changes
    return Outcome(state, changes, evaluations)
