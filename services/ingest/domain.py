"""Ingest rules, the same for the HTTP and the Kafka-native path: what is a valid touch, and stamping it."""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from shared.errors import Problem, Refusal, Rejected, problems_from
from shared.events import IdentifiedStamp, PlatformStamp, TouchEventIn
from shared.serialization import encode, encode_stamped


@dataclass(frozen=True)
class IngestPolicy:
    max_batch: int
    max_future: timedelta
    identity_kinds: frozenset[str]


_batch = TypeAdapter(list[TouchEventIn])
_raw_batch = TypeAdapter(list[Any])
_SOURCE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def policy_problems(
    events: Iterable[tuple[int, TouchEventIn]], now: datetime, policy: IngestPolicy
) -> list[Problem]:
    """Events, by index, that claim to happen later than the policy allows or name an identifier kind
    this deployment does not resolve."""
    latest, seconds = now + policy.max_future, policy.max_future.total_seconds()
    known = ", ".join(sorted(policy.identity_kinds))
    problems = []
    for index, event in events:
        if event.occurred_at > latest:
            problems.append(
                Problem(index=index, field="occurred_at", reason=f"is more than {seconds:g} s in the future")
            )
        problems += [
            Problem(index=index, field=f"identities.{kind}", reason=f"is not a configured kind ({known})")
            for kind in event.identities.keys() - policy.identity_kinds
        ]
    return problems


def _future_among_valid(
    body: bytes, invalid: set[int | None], now: datetime, policy: IngestPolicy
) -> list[Problem]:
    """When some events of a batch are invalid, the others still get every check, so a client fixing
    its batch learns every problem in one answer."""
    items = _raw_batch.validate_json(body)
    valid = (
        (index, TouchEventIn.model_validate(item)) for index, item in enumerate(items) if index not in invalid
    )
    return policy_problems(valid, now, policy)


def _malformed(error: ValidationError) -> Rejected | None:
    first = error.errors()[0]
    if first["type"] == "json_invalid":
        return Rejected(Refusal.MALFORMED, "malformed_json", f"the body is not valid JSON: {first['msg']}")
    if first["type"] == "list_type" and not first["loc"]:
        return Rejected(Refusal.INVALID, "invalid_batch", "the body must be a JSON array of events")
    return None


def parse_batch(body: bytes, now: datetime, policy: IngestPolicy) -> list[TouchEventIn]:
    """Every event of the batch, or Rejected naming every invalid one: a batch is all or nothing."""
    try:
        events = _batch.validate_json(body)
    except ValidationError as error:
        if malformed := _malformed(error):
            raise malformed from None
        problems = problems_from(error.errors(), indexed=True)
        problems += _future_among_valid(body, {problem.index for problem in problems}, now, policy)
        problems.sort(key=lambda problem: problem.index or 0)
        raise Rejected(
            Refusal.INVALID, "invalid_events", "some events are invalid; none was accepted", problems
        ) from None
    if not events:
        raise Rejected(Refusal.INVALID, "empty_batch", "the batch holds no event; send 1 or more")
    if len(events) > policy.max_batch:
        raise Rejected(
            Refusal.TOO_LARGE,
            "batch_too_large",
            f"{len(events)} events; at most {policy.max_batch} per batch",
        )
    if problems := policy_problems(enumerate(events), now, policy):
        raise Rejected(
            Refusal.INVALID, "invalid_events", "some events are invalid; none was accepted", problems
        )
    return events


def parse_record(value: bytes | None, now: datetime, policy: IngestPolicy) -> TouchEventIn:
    """One touch from `touch.inbound`: the same rules as one event of an HTTP batch."""
    try:
        event = TouchEventIn.model_validate_json(value or b"")
    except ValidationError as error:
        raise _malformed(error) or Rejected(
            Refusal.INVALID,
            "invalid_event",
            "the record is not a valid touch event",
            problems_from(error.errors()),
        ) from None
    if problems := policy_problems([(0, event)], now, policy):
        raise Rejected(Refusal.INVALID, "invalid_event", "the record is not a valid touch event", problems)
    return event


Record = tuple[bytes, bytes]


@dataclass
class Routed:
    """Where a batch's touches go: to the customer log when they name only a customer, to identity
    resolution (one partition, so its decisions follow one order) when they name identities."""

    customer_log: list[Record] = field(default_factory=list)
    identity_inbound: list[Record] = field(default_factory=list)


def routed_records(events: Sequence[TouchEventIn], received_at: datetime, source: str) -> Routed:
    """Stamped records, keyed by customer so each customer's touches stay in order."""
    logged = encode(PlatformStamp(received_at=received_at, source=source))
    identified = encode(IdentifiedStamp(received_at=received_at, source=source))
    routed = Routed()
    for event in events:
        key = (event.customer_id or "").encode()
        if event.identities:
            routed.identity_inbound.append((key, encode_stamped(event, identified)))
        else:
            routed.customer_log.append((key, encode_stamped(event, logged)))
    return routed


DEFAULT_INBOUND_SOURCE = "kafka-inbound"
SOURCE_HEADER = "source"


def inbound_source(headers: Sequence[tuple[str, bytes]]) -> str:
    """Who produced a `touch.inbound` record: its `source` header when it names one, else kafka-inbound."""
    for name, value in headers:
        if name == SOURCE_HEADER:
            source = value.decode("utf-8", "replace")
            if not _SOURCE.fullmatch(source):
                raise Rejected(
                    Refusal.INVALID,
                    "invalid_event",
                    "the record is not a valid touch event",
                    [Problem(field="headers.source", reason=f"{source[:40]!r} is not an identifier")],
                )
            return source
    return DEFAULT_INBOUND_SOURCE


def dead_letter_headers(
    rejected: Rejected, failed_at: datetime, stage: str, origin: str
) -> list[tuple[str, bytes]]:
    """Why and when a record was refused; the record's own key and bytes travel unchanged beside these."""
    error = {
        "error": rejected.error,
        "message": rejected.message,
        "problems": [problem.model_dump(exclude_none=True) for problem in rejected.problems],
    }
    return [
        ("error", orjson.dumps(error)),
        ("stage", stage.encode()),
        ("failed_at", failed_at.isoformat().encode()),
        ("origin", origin.encode()),
    ]
