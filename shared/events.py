"""The wire contract: every record that crosses a topic or the HTTP API, defined once.

Models are frozen and forbid unknown fields, so a typo in a producer is an error, not lost data.
Each record carries `schema_version`; an older shape is upcast by an explicit function, never edited.
"""

import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.identities import Identities

# Segment's limit for a whole message, so that whatever its tracking API accepts fits.
MAX_PROPERTIES_BYTES = 32 * 1024


def _matching(pattern: str, rule: str) -> AfterValidator:
    """A regex check whose error states the rule in words rather than echoing the regex."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value[:40]!r} is not {rule}")
        return value

    return AfterValidator(check)


IDENTIFIER = re.compile(r"[A-Za-z0-9._:-]{1,128}")
Identifier = Annotated[
    str,
    Field(min_length=1, max_length=128, json_schema_extra={"pattern": r"^[A-Za-z0-9._:-]+$"}),
    _matching(r"[A-Za-z0-9._:-]+", "made only of letters, digits and . _ : -"),
]
EventType = Annotated[
    str,
    Field(max_length=64, description="Lowercase, dotted: `purchase`, `email.opened`, `support.call`."),
    _matching(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*", "lowercase words joined by dots, e.g. email.opened"),
]
Channel = Annotated[
    str,
    Field(
        max_length=32, description="The channel system's kind: `web`, `email`, `store`, `call_center`, ..."
    ),
    _matching(r"[a-z][a-z0-9_]*", "a lowercase word such as web, email, store or call_center"),
]


def _require_rfc3339_text(value: Any) -> Any:
    # pydantic would also accept epoch numbers; the contract says RFC 3339 strings, so say so early.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string with a UTC offset, e.g. 2026-11-22T10:15:00Z")
    return value


# Every stage handles these instants: Python's datetime with any offset applied, PostgreSQL's
# timestamptz, and the segment evaluator's integer microseconds. Outside them a value is refused on entry.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
_RANGE = f"between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} (UTC)"


def _to_utc(value: datetime) -> datetime:
    # astimezone through pydantic's pure-Python TzInfo costs microseconds; most inputs are already UTC.
    try:
        utc = value.replace(tzinfo=UTC) if not value.utcoffset() else value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"must be {_RANGE}") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"must be {_RANGE}")
    return utc


Timestamp = Annotated[AwareDatetime, BeforeValidator(_require_rfc3339_text), AfterValidator(_to_utc)]


def _unstorable(value: JsonValue, path: str) -> str | None:
    """Where in a JSON value something lies that no store can hold, and what: NUL, NaN or infinity."""
    if isinstance(value, str):
        return (
            f"{path} holds a NUL character (\\u0000), which PostgreSQL cannot store"
            if "\0" in value
            else None
        )
    if isinstance(value, float):
        return (
            None
            if math.isfinite(value)
            else f"{path} is {value}, which JSON cannot carry; send a finite number"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if "\0" in key:
                return f"a key in {path} holds a NUL character (\\u0000), which PostgreSQL cannot store"
            if found := _unstorable(item, f"{path}.{key}"):
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if found := _unstorable(item, f"{path}.{index}"):
                return found
    return None


def _storable_text(value: str) -> str:
    if "\0" in value:
        raise ValueError("holds a NUL character (\\u0000), which PostgreSQL cannot store")
    return value


# Free text a store keeps (a segment's name, a rule's property): anything but NUL.
StorableText = Annotated[str, AfterValidator(_storable_text)]


def _bounded_properties(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError as error:
        raise ValueError(f"cannot be stored as JSON: {error}") from None
    if len(encoded) > MAX_PROPERTIES_BYTES:
        raise ValueError(f"serializes to {len(encoded)} bytes; at most {MAX_PROPERTIES_BYTES} are allowed")
    # orjson writes NUL as \u0000 and NaN or infinity as null: only then can anything be unstorable.
    if (b"\\u0000" in encoded or b"null" in encoded) and (found := _unstorable(value, "properties")):
        raise ValueError(found)
    return value


Properties = Annotated[dict[str, JsonValue], AfterValidator(_bounded_properties)]


class WireModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TouchEventIn(WireModel):
    """A customer touch as a channel system sends it: who by `customer_id`, `identities` or both."""

    event_id: Identifier = Field(description="Client-chosen idempotency key: resending it never duplicates.")
    customer_id: Identifier | None = Field(
        default=None, description="Your id of the customer, when this system knows it."
    )
    type: EventType
    channel: Channel
    occurred_at: Timestamp = Field(description="When it happened, RFC 3339 with an offset.")
    properties: Properties = Field(default_factory=dict, description="Any JSON object, at most 32 KiB.")
    identities: Identities = Field(default_factory=dict, validate_default=True)

    @field_validator("identities")
    @classmethod
    def _someone_named(cls, identities: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        # customer_id is absent from info.data when it failed its own check: that error says enough.
        if not identities and info.data.get("customer_id", "invalid") is None:
            raise ValueError("names nobody: send customer_id, identities, or both")
        return identities


class Arrival(WireModel):
    """What the platform adds to a client's touch on arrival."""

    received_at: Timestamp
    source: Identifier = Field(description="The channel system that sent it, from its API key.")


class PlatformStamp(Arrival):
    """The arrival of a touch that goes straight to the customer log. A touch is written in the oldest
    version that holds it, so one naming only `customer_id` is the same record it always was."""

    schema_version: Literal[1, 2] = 1
    kind: Literal["touch"] = "touch"


def upcast_touch(raw: Any) -> Any:
    """Version 1 (before identities) -> 2: the same touch, naming no identities."""
    if isinstance(raw, dict) and raw.get("schema_version") == 1:
        if "identities" in raw:
            raise ValueError("a version 1 touch names no identities; version 2 does")
        return raw | {"schema_version": 2}
    return raw


class TouchEvent(TouchEventIn, PlatformStamp):
    """A touch on the customer log, its `customer_id` the profile it belongs to (resolved from its
    identities when it named any): the client's fields plus the platform's stamp."""

    customer_id: Identifier
    schema_version: Literal[2] = 2

    _upcast = model_validator(mode="before")(upcast_touch)


class IdentifiedStamp(Arrival):
    """The arrival of a touch that names identities, bound for resolution."""

    schema_version: Literal[1] = 1
    kind: Literal["identified"] = "identified"


class IdentifiedTouch(TouchEventIn, IdentifiedStamp):
    """A touch that names identities, on `identity.inbound`: resolution decides whose it is."""


class Purpose(StrEnum):
    PROFILING = "profiling"
    MARKETING = "marketing"


class ConsentStatus(StrEnum):
    GRANTED = "granted"
    DENIED = "denied"


class ConsentChange(WireModel):
    """A customer's consent for one purpose changed; travels in the customer log beside their touches."""

    schema_version: Literal[1] = 1
    kind: Literal["consent"] = "consent"
    change_id: Identifier
    customer_id: Identifier
    purpose: Purpose
    status: ConsentStatus
    changed_at: Timestamp
    source: Identifier
    erasure: bool = Field(default=False, description="Part of a right-to-be-forgotten request.")


class ProfileMerged(WireModel):
    """Identity resolution absorbed `customer_id` into `survivor`: the absorbed profile's last record on
    the customer log, after all its touches. The consent filter carries its explicit denials over to the
    survivor from here, so a merge never widens what the person allowed."""

    schema_version: Literal[1] = 1
    kind: Literal["merged"] = "merged"
    change_id: Identifier = Field(description="The identity change's id: `<event_id>:<n>`.")
    customer_id: Identifier = Field(description="The absorbed profile.")
    survivor: Identifier
    identifier_kind: str
    identifier_value: str
    caused_by: Identifier
    at: Timestamp


class ProfileAbsorbed(WireModel):
    """The survivor's side of a merge: on the customer log keyed by the survivor, so it is judged in the
    survivor's order. Projections that keep per-profile state (segments) take the absorbed profile's
    state over from here, once its own side (`ProfileMerged`) has sealed it."""

    schema_version: Literal[1] = 1
    kind: Literal["absorbed"] = "absorbed"
    change_id: Identifier = Field(description="The identity change's id, as on its `ProfileMerged`.")
    customer_id: Identifier = Field(description="The surviving profile.")
    absorbed: Identifier
    at: Timestamp


class ProfileSplit(WireModel):
    """An identifier split off the profile `customer_id` into `split_off`, and the touches that go with
    it: on the customer log keyed by the profile they leave, after every touch it had. Projections drop
    those touches there; the resolver logs each again for `split_off`, whose consent then judges it."""

    schema_version: Literal[1] = 1
    kind: Literal["split"] = "split"
    change_id: Identifier
    customer_id: Identifier = Field(description="The profile the identifier leaves.")
    split_off: Identifier
    identifier_kind: str
    identifier_value: str
    event_ids: list[Identifier]
    # Profiles merged into `customer_id` whose stored touches some of `event_ids` are.
    detached_from: list[Identifier]
    caused_by: Identifier
    at: Timestamp


CustomerLogRecord = Annotated[
    TouchEvent | ConsentChange | ProfileMerged | ProfileAbsorbed | ProfileSplit, Field(discriminator="kind")
]


class AllowedTouch(WireModel):
    """A touch on the allowed stream, with the purposes consent lets projections use it for."""

    schema_version: Literal[1] = 1
    kind: Literal["allowed"] = "allowed"
    event: TouchEvent
    purposes: frozenset[Purpose] = Field(min_length=1)


class EraseMarker(WireModel):
    """Consent for `purposes` was withdrawn: every projection needing one of them deletes the customer."""

    schema_version: Literal[1] = 1
    kind: Literal["erase"] = "erase"
    customer_id: Identifier
    purposes: frozenset[Purpose] = Field(min_length=1)
    change_id: Identifier
    at: Timestamp
    erasure: bool = False


class AbsorbedMarker(WireModel):
    """A `ProfileAbsorbed` as the allowed stream carries it: with what the survivor's consent allows at
    that point in its log (possibly nothing), so a projection taking the absorbed state over never uses
    it for a purpose the survivor denies."""

    schema_version: Literal[1] = 1
    kind: Literal["absorbed"] = "absorbed"
    change_id: Identifier
    customer_id: Identifier = Field(description="The surviving profile.")
    absorbed: Identifier
    at: Timestamp
    purposes: frozenset[Purpose]


# A ProfileMerged is forwarded as it is (the absorbed profile's last record, sealing its state), and so
# is a ProfileSplit.
AllowedRecord = Annotated[
    AllowedTouch | EraseMarker | ProfileMerged | AbsorbedMarker | ProfileSplit, Field(discriminator="kind")
]


class MembershipTransition(StrEnum):
    ENTERED = "entered"
    EXITED = "exited"


class MembershipReason(StrEnum):
    EVENT = "event"
    WINDOW_EXPIRED = "window_expired"
    DEFINITION_CHANGED = "definition_changed"
    SEGMENT_DELETED = "segment_deleted"
    CONSENT_REVOKED = "consent_revoked"
    IDENTITY_MERGED = "identity_merged"
    IDENTITY_SPLIT = "identity_split"


class SegmentMembershipChange(WireModel):
    """A customer entered or left a segment: what campaign tools consume from `segment.membership`."""

    schema_version: Literal[1] = 1
    change_id: Identifier = Field(description="Deterministic: consumers deduplicate on it.")
    segment_id: Identifier
    segment_version: int = Field(ge=1)
    customer_id: Identifier
    transition: MembershipTransition
    at: Timestamp
    reason: MembershipReason


class ErasureRequested(WireModel):
    """A customer asked to be forgotten: on `identity.inbound`, in order with the touches, so the resolver
    forgets their identifiers and erases the profiles a merge joined to them."""

    schema_version: Literal[1] = 1
    kind: Literal["erasure"] = "erasure"
    erasure_id: Identifier
    customer_id: Identifier
    requested_at: Timestamp
    source: Identifier


class SplitRequested(WireModel):
    """Undo a wrong merge: `identifier_kind`/`identifier_value` leaves the profile `customer_id`. On
    `identity.inbound`, in order with the touches, so the resolver splits the graph where it stands."""

    schema_version: Literal[1] = 1
    kind: Literal["split"] = "split"
    split_id: Identifier
    customer_id: Identifier
    identifier_kind: str
    identifier_value: str
    requested_at: Timestamp
    source: Identifier


IdentityInboundRecord = Annotated[
    IdentifiedTouch | ErasureRequested | SplitRequested, Field(discriminator="kind")
]


class IdentityChangeKind(StrEnum):
    LINKED = "linked"
    MERGED = "merged"
    CONFLICT = "conflict"
    SPLIT = "split"


class IdentityChange(WireModel):
    """The identity graph changed: what campaign tools and projections read from `identity.changes`.

    `linked`: the identifier now belongs to `profile_id`. `merged`: `other_profile_id` was absorbed into
    `profile_id` through the identifier. `conflict`: linking the identifier to `profile_id` was refused
    (`reason` says which protection rule; `other_profile_id` holds it, if anyone does).
    """

    schema_version: Literal[1] = 1
    change_id: Identifier = Field(description="`<event_id>:<n>`: consumers deduplicate on it.")
    change: IdentityChangeKind
    profile_id: Identifier
    other_profile_id: Identifier | None = None
    identifier_kind: str
    identifier_value: str
    reason: str | None = None
    caused_by: Identifier = Field(description="The event_id of the touch that caused the change.")
    at: Timestamp
