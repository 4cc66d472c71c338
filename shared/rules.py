"""Segment rules and definitions: the JSON tree marketing writes, and the record that carries it to workers.

A rule is an object with exactly one operator key (`all`, `any`, `not`, `count`, `sum`, `min`, `max`,
`last`); its validation errors carry the path of the offending node, e.g. `rule.all.1.count.within`.
"""

import re
from functools import cache
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    model_serializer,
    model_validator,
)

from shared.events import Channel, EventType, Identifier, StorableText, Timestamp, WireModel

_DURATION = re.compile(r"([1-9][0-9]{0,6})([smhd])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@cache  # rules are evaluated millions of times over a handful of distinct durations
def duration_seconds(duration: str) -> int:
    match = _DURATION.fullmatch(duration)
    assert match, duration  # only validated durations reach here
    return int(match[1]) * UNIT_SECONDS[match[2]]


def _check_duration(value: str) -> str:
    if not _DURATION.fullmatch(value):
        raise ValueError(f"{value[:20]!r} is not a duration such as 45s, 15m, 12h or 30d")
    return value


Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    Field(description="A number and a unit: `45s`, `15m`, `12h`, `30d`."),
]
PropertyName = Annotated[StorableText, Field(min_length=1, max_length=64)]
Scalar = str | int | float | bool
# What a rule may compare a property with: JSON's scalars that PostgreSQL's jsonb can store.
StorableScalar = StorableText | int | float | bool


class RuleModel(BaseModel):
    # `not` is a Python keyword, so NotRule's field is `not_` aliased to the wire spelling both ways.
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True, allow_inf_nan=False
    )

    @model_serializer(mode="wrap")
    def _as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A rule reads back the way marketing wrote it: no nulls or empty filters added."""
        return {key: value for key, value in handler(self).items() if value is not None and value != {}}


class EventFilter(RuleModel):
    """Which events a rule looks at: all of `type`, `channel` and each property equality must match."""

    type: EventType | None = None
    channel: Channel | None = None
    properties: dict[PropertyName, StorableScalar] = Field(default_factory=dict, max_length=8)


class WindowFilter(EventFilter):
    within: Duration


class MeasureFilter(WindowFilter):
    property: PropertyName = Field(
        description="A numeric property; events without a number there are skipped."
    )


class Comparison(RuleModel):
    gte: float | None = None
    lte: float | None = None
    eq: float | None = None

    @model_validator(mode="after")
    def _compares_something(self) -> Self:
        if self.gte is None and self.lte is None and self.eq is None:
            raise ValueError("needs at least one of gte, lte or eq")
        return self

    def accepts(self, value: float) -> bool:
        return (
            (self.gte is None or value >= self.gte)
            and (self.lte is None or value <= self.lte)
            and (self.eq is None or value == self.eq)
        )


class CountRule(Comparison):
    count: WindowFilter


class SumRule(Comparison):
    sum: MeasureFilter


class MinRule(Comparison):
    min: MeasureFilter


class MaxRule(Comparison):
    max: MeasureFilter


class LastRule(RuleModel):
    """Recency: the newest matching event is `within` a duration of now, or `not_within` it (or none is)."""

    last: EventFilter
    within: Duration | None = None
    not_within: Duration | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if (self.within is None) == (self.not_within is None):
            raise ValueError("needs exactly one of within or not_within")
        return self


class AllRule(RuleModel):
    all: list["Rule"] = Field(min_length=1, max_length=32)


class AnyRule(RuleModel):
    any: list["Rule"] = Field(min_length=1, max_length=32)


class NotRule(RuleModel):
    not_: "Rule" = Field(alias="not")


OPERATORS = ("all", "any", "not", "count", "sum", "min", "max", "last")


def _operator(value: Any) -> str | None:
    """The union member's tag; in angle brackets, which tells error paths a tag from a field name."""
    keys = (
        value.model_fields_set if isinstance(value, BaseModel) else value if isinstance(value, dict) else ()
    )
    present = [key for key in OPERATORS if key in keys or (key == "not" and "not_" in keys)]
    return f"<{present[0]}>" if len(present) == 1 else None


Rule = Annotated[
    Annotated[AllRule, Tag("<all>")]
    | Annotated[AnyRule, Tag("<any>")]
    | Annotated[NotRule, Tag("<not>")]
    | Annotated[CountRule, Tag("<count>")]
    | Annotated[SumRule, Tag("<sum>")]
    | Annotated[MinRule, Tag("<min>")]
    | Annotated[MaxRule, Tag("<max>")]
    | Annotated[LastRule, Tag("<last>")],
    Discriminator(
        _operator,
        custom_error_type="rule_operator",
        custom_error_message=f"a rule is an object with exactly one of: {', '.join(OPERATORS)}",
    ),
]

AllRule.model_rebuild()
AnyRule.model_rebuild()
NotRule.model_rebuild()

WindowedRule = CountRule | SumRule | MinRule | MaxRule | LastRule


class SegmentDefinition(WireModel):
    """One version of a segment on `segment.definitions` (compacted, keyed by id); a deletion is a version."""

    schema_version: Literal[1] = 1
    segment_id: Identifier
    version: int = Field(ge=1)
    name: StorableText = Field(min_length=1, max_length=200)
    rule: Rule
    deleted: bool = False
    changed_at: Timestamp
