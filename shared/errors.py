"""The shape of a validation problem, shared by HTTP answers and dead-letter records."""

from collections.abc import Iterable
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
