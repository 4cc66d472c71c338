"""Bytes on the wire: JSON through pydantic's own (Rust) encoder and decoder."""

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.events import (
    AllowedRecord,
    CustomerLogRecord,
    TouchEventIn,
)

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")

_customer_log = TypeAdapter[CustomerLogRecord](CustomerLogRecord)
_allowed = TypeAdapter[AllowedRecord](AllowedRecord)


def encode(record: BaseModel) -> bytes:
    return record.__pydantic_serializer__.to_json(record)


def encode_stamped(event: TouchEventIn, stamp: bytes) -> bytes:
    """An encoded record from a validated client event and an encoded Arrival: a TouchEvent with a
    PlatformStamp, an IdentifiedTouch with its own.

    Splices two JSON objects instead of building and re-encoding a model per event: stamping is on
    ingest's hot path, and one stamp serves a whole batch. Empty identities are left out, so a touch
    naming only `customer_id` is the version 1 record it always was.
    """
    fields = encode(event) if event.identities else _serialize_event(event, exclude=_IDENTITIES)
    return fields[:-1] + b"," + stamp[1:]


_IDENTITIES = {"identities"}
_serialize_event = TouchEventIn.__pydantic_serializer__.to_json


def decode(model: type[ModelT], data: bytes) -> ModelT:
    return model.model_validate_json(data)


def decode_customer_log(data: bytes) -> CustomerLogRecord:
    """A customer-log record of either kind, told apart by its `kind` field."""
    return _customer_log.validate_json(data)


def allowed_fields(data: bytes) -> dict[str, Any]:
    """An allowed-stream record as plain JSON, for the projections' fast readers, which trust the consent
    filter's output and build what they store straight from it; an unknown version is refused."""
    raw: dict[str, Any] = orjson.loads(data)
    if raw.get("schema_version") != 1:
        raise ValueError(f"unsupported allowed-stream record version: {raw.get('schema_version')!r}")
    return raw


def decode_allowed(data: bytes) -> AllowedRecord:
    """An allowed-stream record: a touch with its purposes, or an erase marker."""
    return _allowed.validate_json(data)


def read_allowed(
    value: bytes, fast: Callable[[bytes], T], validated: Callable[[AllowedRecord], T]
) -> T | str:
    """An allowed-stream record as a projection needs it, or why it cannot be read.

    The fast reader trusts the consent filter's output; when it fails, the validating decoder either
    says precisely what is wrong or, should the fast reader be the one at fault, reads the record.
    """
    try:
        return fast(value)
    except (ValueError, KeyError, TypeError, AttributeError):
        try:
            return validated(decode_allowed(value))
        except ValidationError as error:
            return str(error)
