"""Opaque page cursors: every paginated API hands out and reads back the same kind."""

import base64
import binascii
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import Field, StrictInt, TypeAdapter, ValidationError

T = TypeVar("T")

# A position that is one PostgreSQL bigint (a log offset, an outbox sequence): never negative, never past
# bigint, never `true`.
BIGINT_POSITION = TypeAdapter(tuple[Annotated[StrictInt, Field(ge=0, lt=2**63)]])


def encode_cursor(*position: Any) -> str:
    """Where a page ended, as a URL-safe token a client passes back unchanged."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_cursor(text: str, shape: TypeAdapter[T]) -> T:
    """The position `encode_cursor` was given, checked against `shape` (a tuple of the position's
    types), so a crafted cursor is refused here rather than by the database; ValueError for anything this
    API did not hand out."""
    try:
        return shape.validate_python(orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))))
    except (binascii.Error, orjson.JSONDecodeError, ValueError, ValidationError):
        raise ValueError("is not a cursor this API returned") from None
