"""Opaque page cursors: every paginated API hands out and reads back the same kind."""

import base64
import binascii
from typing import Any

import orjson


def encode_cursor(*position: Any) -> str:
    """Where a page ended, as a URL-safe token a client passes back unchanged."""
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode_cursor(text: str, arity: int) -> list[Any]:
    """The position `encode_cursor` was given; ValueError for anything this API did not hand out."""
    try:
        position = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        position = None
    if not isinstance(position, list) or len(position) != arity:
        raise ValueError("is not a cursor this API returned")
    return position
