"""Segment's HTTP Tracking API spoken by ingest: a Segment message becomes a Touchline touch.

The rules, documented in README.md ("Segment-compatible tracking API"):
- `messageId` -> `event_id` (as it is when it is an identifier, else a digest of it): Segment's retries
  and ours deduplicate on it. A message without one gets a digest of its content.
- `userId` -> `customer_id`; `anonymousId` -> identity `anonymous_id`; `traits.email`, `traits.phone`
  (or `context.traits.*`) -> identities `email`, `phone`; alias's `previousId` -> `anonymous_id`.
- the type: track's event name through EVENT_TYPES (Segment's spec events), else its words lowercased
  and joined by `_` ("Signed Up" -> `signed_up`); page -> `page.viewed`, screen -> `screen.viewed`,
  identify -> `identify`, group -> `group`, alias -> `alias`.
- the channel: page -> `web`, screen -> `app`, else the message's `channel` (browser -> web,
  mobile -> app, server -> server), `server` when it names none.
- `occurred_at`: the client's `timestamp` (or `originalTimestamp`) moved by the client's clock skew,
  `received_at - sentAt`; the client's time as it is without `sentAt`; `received_at` without either.
- properties: track/page/screen `properties`, identify/group `traits`, plus `segment`: the call, its
  event or name, `context`, `integrations` and every field Touchline has no place for, kept as sent.
  A purchase without `amount` takes `total` or `revenue`, which Touchline's profile sums.
"""

import hashlib
import re
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, JsonValue, ValidationError
from pydantic.alias_generators import to_camel

from services.ingest.domain import IngestPolicy, policy_problems
from shared.errors import Problem, Refusal, Rejected, problems_from
from shared.events import IDENTIFIER, TouchEventIn
from shared.identities import ANONYMOUS_ID, EMAIL, PHONE

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
Call = Literal["track", "identify", "page", "screen", "group", "alias"]
CALLS: tuple[Call, ...] = ("track", "identify", "page", "screen", "group", "alias")

# Segment's spec events (segment.com/docs/connections/spec/) that Touchline has a type of its own for.
EVENT_TYPES = {
    "Order Completed": "purchase",
    "Email Opened": "email.opened",
    "Email Link Clicked": "email.clicked",
    "Email Delivered": "email.delivered",
    "Product Viewed": "product.viewed",
    "Product Added": "cart.added",
    "Checkout Started": "checkout.started",
}
CALL_TYPES = {
    "page": "page.viewed",
    "screen": "screen.viewed",
    "identify": "identify",
    "group": "group",
    "alias": "alias",
}
CHANNELS = {"browser": "web", "mobile": "app", "server": "server"}
_WORDS = re.compile(r"[^a-z0-9]+")


class SegmentMessage(BaseModel):
    """One call as Segment's libraries send it; fields Touchline has no place for are kept (extra)."""

    model_config = ConfigDict(extra="allow", frozen=True, alias_generator=to_camel)

    type: Call | None = None
    message_id: str | None = None
    user_id: str | int | None = None
    anonymous_id: str | int | None = None
    timestamp: AwareDatetime | None = None
    original_timestamp: AwareDatetime | None = None
    sent_at: AwareDatetime | None = None
    event: str | None = None
    properties: dict[str, JsonValue] | None = None
    traits: dict[str, JsonValue] | None = None
    context: dict[str, JsonValue] | None = None


class SegmentBatch(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, alias_generator=to_camel)

    batch: list[dict[str, Any]]
    sent_at: AwareDatetime | None = None


def event_type(call: Call, message: SegmentMessage) -> str:
    if call != "track":
        return CALL_TYPES[call]
    name = message.event or ""
    if name in EVENT_TYPES:
        return EVENT_TYPES[name]
    slug = _WORDS.sub("_", name.lower()).strip("_")[:64]
    if not slug:
        raise ValueError("event: a track call names its event, e.g. 'Order Completed'")
    return slug if slug[0].isalpha() else f"event_{slug}"[:64]


def channel(call: Call, message: SegmentMessage) -> str:
    if call in ("page", "screen"):
        return "web" if call == "page" else "app"
    named = (message.model_extra or {}).get("channel") or (message.context or {}).get("channel")
    return CHANNELS.get(named, "server") if isinstance(named, str) else "server"


def occurred_at(message: SegmentMessage, batch_sent_at: datetime | None, received_at: datetime) -> datetime:
    """When it happened on the client's clock, corrected by how far that clock is off ours."""
    client_time = message.timestamp or message.original_timestamp
    sent_at = message.sent_at or batch_sent_at
    if client_time is None:
        return received_at
    try:
        return client_time + (received_at - sent_at) if sent_at else client_time
    except OverflowError:
        raise ValueError("timestamp: too far from sentAt to be corrected") from None


def _traits(message: SegmentMessage) -> dict[str, Any]:
    context_traits = (message.context or {}).get("traits")
    return {**(context_traits if isinstance(context_traits, dict) else {}), **(message.traits or {})}


def identities(call: Call, message: SegmentMessage) -> dict[str, str]:
    traits = _traits(message)
    found = {kind: traits[kind] for kind in (EMAIL, PHONE) if isinstance(traits.get(kind), str)}
    anonymous = message.anonymous_id
    if call == "alias":
        anonymous = (message.model_extra or {}).get("previousId") or anonymous
    if anonymous is not None:
        found[ANONYMOUS_ID] = str(anonymous)
    return found


def _event_id(message: SegmentMessage, raw: dict[str, Any]) -> str:
    given = message.message_id
    if given and IDENTIFIER.fullmatch(given):
        return given
    basis = given.encode() if given else orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    return "seg-" + hashlib.blake2b(basis, digest_size=16).hexdigest()


def _properties(call: Call, message: SegmentMessage, type_: str) -> dict[str, Any]:
    own = dict(message.traits or {}) if call in ("identify", "group") else dict(message.properties or {})
    if type_ == "purchase" and "amount" not in own:
        amount = own.get("total", own.get("revenue"))
        if isinstance(amount, int | float):
            own["amount"] = amount
    kept = dict(message.model_extra or {})
    kept |= {"call": call, "event": message.event, "context": message.context}
    if call not in ("identify", "group"):
        kept["traits"] = message.traits
    return own | {"segment": {k: v for k, v in kept.items() if v is not None}}


def touch_from(
    raw: dict[str, Any], call: Call | None, batch_sent_at: datetime | None, received_at: datetime
) -> TouchEventIn:
    """The touch a Segment call stands for; ValueError or pydantic's ValidationError say why not."""
    if len(orjson.dumps(raw)) > MAX_MESSAGE_BYTES:
        raise ValueError(f"the message is over Segment's {MAX_MESSAGE_BYTES // 1024} KB per call")
    message = SegmentMessage.model_validate(raw)
    kind = call or message.type
    if kind is None:
        raise ValueError(f"type: a batch's message names its call, one of {', '.join(CALLS)}")
    type_ = event_type(kind, message)
    return TouchEventIn.model_validate(
        {
            "event_id": _event_id(message, raw),
            "customer_id": None if message.user_id is None else str(message.user_id),
            "type": type_,
            "channel": channel(kind, message),
            "occurred_at": occurred_at(message, batch_sent_at, received_at),
            "properties": _properties(kind, message, type_),
            "identities": identities(kind, message),
        }
    )


def _problem(index: int | None, error: ValueError) -> list[Problem]:
    if isinstance(error, ValidationError):
        return [p.model_copy(update={"index": index}) for p in problems_from(error.errors())]
    field, _, reason = str(error).partition(": ")
    return [Problem(index=index, field=field if reason else "message", reason=reason or str(error))]


def _object(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise Rejected(Refusal.MALFORMED, "malformed_json", f"the body is not valid JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise Rejected(Refusal.MALFORMED, "invalid_message", "the body must be a JSON object")
    return parsed


def parse_call(body: bytes, call: Call, received_at: datetime, policy: IngestPolicy) -> TouchEventIn:
    """The touch of one call's body, or Rejected naming every problem."""
    try:
        touch = touch_from(_object(body), call, None, received_at)
    except ValueError as error:
        raise Rejected(
            Refusal.INVALID, "invalid_message", "the message is invalid", _problem(None, error)
        ) from None
    if problems := policy_problems([(0, touch)], received_at, policy):
        raise Rejected(Refusal.INVALID, "invalid_message", "the message is invalid", problems)
    return touch


def parse_batch_call(
    body: bytes, received_at: datetime, policy: IngestPolicy
) -> tuple[list[TouchEventIn], list[Problem]]:
    """A batch's valid touches, and a problem for each message refused; the valid ones still count."""
    try:
        batch = SegmentBatch.model_validate(_object(body))
    except ValidationError as error:
        raise Rejected(
            Refusal.MALFORMED,
            "invalid_batch",
            'send {"batch": [message, ...]}',
            problems_from(error.errors()),
        ) from None
    touches, problems = [], []
    for index, raw in enumerate(batch.batch):
        try:
            touch = touch_from(raw, None, batch.sent_at, received_at)
        except ValueError as error:
            problems += _problem(index, error)
            continue
        if refused := policy_problems([(index, touch)], received_at, policy):
            problems += refused
        else:
            touches.append(touch)
    return touches, problems
