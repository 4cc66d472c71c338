"""The shape of a validation problem, shared by HTTP answers and dead-letter records, and the refusal
domain code raises: what kind of input it refuses, never an HTTP status (shared/http.py maps kinds)."""

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel


class Problem(BaseModel):
    field: str
    reason: str
    index: int | None = None


def problems_from(errors: Iterable[Any], *, indexed: bool = False, skip: int = 0) -> list[Problem]:
    """pydantic errors as problems; `indexed` reads the first location part as an item's index."""
    problems = []
    for error in errors:
        # A part in angle brackets names a tagged union's member (see shared/rules.py), not a field.
        location = [part for part in list(error["loc"])[skip:] if not str(part).startswith("<")]
        index = location.pop(0) if indexed and location and isinstance(location[0], int) else None
        field = ".".join(str(part) for part in location) or "body"
        problems.append(Problem(field=field, reason=error["msg"].removeprefix("Value error, "), index=index))
    return problems


class Refusal(StrEnum):
    MALFORMED = "malformed"  # not JSON at all
    INVALID = "invalid"  # JSON, but not what the contract allows
    TOO_LARGE = "too_large"  # more than one request may carry
    UNSUPPORTED_MEDIA = "unsupported_media"  # not sent as JSON


class Rejected(Exception):
    """Input refused: the kind of refusal, a machine-readable code, a message and every problem."""

    def __init__(self, refusal: Refusal, error: str, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.refusal, self.error, self.message, self.problems = refusal, error, message, list(problems)
