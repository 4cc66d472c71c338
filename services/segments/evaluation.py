"""Rules over a customer's digest, evaluated at a given time: pure, and shared by every evaluation path.

A digest is a customer's recent touches reduced to what rules can reference (time, type, channel and the
referenced properties). A rule's truth can only change when a touch arrives, its definition changes, or
time reaches a *boundary*: a touch's time, or that time plus one of the rules' window lengths. Windows
are (now - length, now]. Times are integer microseconds since the epoch, so evaluating incrementally and
from scratch agree exactly.
"""

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple, Protocol

from shared.rules import (
    AllRule,
    AnyRule,
    CountRule,
    EventFilter,
    LastRule,
    MaxRule,
    MeasureFilter,
    MinRule,
    NotRule,
    Rule,
    Scalar,
    SegmentDefinition,
    SumRule,
    duration_seconds,
)

MICROS = 1_000_000
MAX_RULE_DEPTH = 8


class Point(NamedTuple):
    """One touch in a digest."""

    at: int
    key: int  # a fingerprint of event_id: a resent touch is kept once
    type: str
    channel: str
    values: Mapping[str, Scalar]


def fingerprint(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=7).digest())


@dataclass(frozen=True)
class Segment:
    """A definition as the evaluator uses it."""

    segment_id: str
    version: int
    rule: Rule
    deleted: bool
    changed_revision: int  # the definitions revision that brought this version
    types: frozenset[str] | None  # the event types it reads; None when a filter matches every type


@dataclass(frozen=True)
class Definitions:
    """Every segment as of `revision`: the definitions topic read up to that offset."""

    revision: int = 0
    segments: Mapping[str, Segment] = field(default_factory=dict)

    # Derived once per registry, not per customer: every evaluation path asks for these.
    @cached_property
    def _live(self) -> tuple[Segment, ...]:
        return tuple(segment for segment in self.segments.values() if not segment.deleted)

    def live(self) -> list[Segment]:
        return list(self._live)

    @cached_property
    def _by_type(self) -> dict[str | None, tuple[Segment, ...]]:
        index: dict[str | None, list[Segment]] = {}
        for segment in self._live:
            for event_type in segment.types if segment.types is not None else (None,):
                index.setdefault(event_type, []).append(segment)
        return {event_type: tuple(segments) for event_type, segments in index.items()}

    def affected_by(self, event_type: str) -> list[Segment]:
        return [*self._by_type.get(event_type, ()), *self._by_type.get(None, ())]

    def changed_since(self, revision: int) -> list[Segment]:
        return [s for s in self.segments.values() if s.changed_revision > revision]

    @cached_property
    def _windows(self) -> frozenset[int]:
        return frozenset(w for segment in self._live for w in windows_of(segment.rule))

    def windows(self) -> frozenset[int]:
        return self._windows

    @cached_property
    def _properties(self) -> frozenset[str]:
        return frozenset(p for segment in self._live for p in properties_of(segment.rule))

    def properties(self) -> frozenset[str]:
        return self._properties


def with_definition(definitions: Definitions, record: SegmentDefinition, offset: int) -> Definitions:
    """The registry after the definitions topic's record at `offset` (its revision is offset + 1).

    Offsets, not a count of records read, so every worker agrees on revisions after compaction.
    """
    revision = offset + 1
    filters = list(filters_of(record.rule))
    types = None if any(f.type is None for f in filters) else frozenset(str(f.type) for f in filters)
    segment = Segment(record.segment_id, record.version, record.rule, record.deleted, revision, types)
    return Definitions(revision, {**definitions.segments, record.segment_id: segment})


def labelled_children(rule: Rule, path: str) -> list[tuple[str, Rule]]:
    """A node's sub-rules with their paths in the JSON tree."""
    if isinstance(rule, AllRule):
        return [(f"{path}.all.{index}", child) for index, child in enumerate(rule.all)]
    if isinstance(rule, AnyRule):
        return [(f"{path}.any.{index}", child) for index, child in enumerate(rule.any)]
    return [(f"{path}.not", rule.not_)] if isinstance(rule, NotRule) else []


def _leaves(rule: Rule) -> Iterable[Rule]:
    yield rule
    for _, child in labelled_children(rule, ""):
        yield from _leaves(child)


def filters_of(rule: Rule) -> Iterable[EventFilter]:
    for node in _leaves(rule):
        if isinstance(node, CountRule):
            yield node.count
        elif isinstance(node, SumRule | MinRule | MaxRule):
            yield _measure(node)
        elif isinstance(node, LastRule):
            yield node.last


def window_of_node(node: Rule) -> str | None:
    """The window length a leaf rule looks over; None for all/any/not."""
    if isinstance(node, CountRule):
        return node.count.within
    if isinstance(node, SumRule | MinRule | MaxRule):
        return _measure(node).within
    if isinstance(node, LastRule):
        return node.within or node.not_within
    return None


def windows_of(rule: Rule) -> Iterable[int]:
    """Every window length in the rule, in microseconds."""
    lengths = (window_of_node(node) for node in _leaves(rule))
    return (duration_seconds(length) * MICROS for length in lengths if length is not None)


def properties_of(rule: Rule) -> Iterable[str]:
    for node in _leaves(rule):
        if isinstance(node, SumRule | MinRule | MaxRule):
            yield _measure(node).property
    for event_filter in filters_of(rule):
        yield from event_filter.properties


def _measure(node: SumRule | MinRule | MaxRule) -> MeasureFilter:
    return node.sum if isinstance(node, SumRule) else node.min if isinstance(node, MinRule) else node.max


def _same(value: object, wanted: Scalar) -> bool:
    # JSON's true is not 1, though Python's True == 1.
    return isinstance(value, bool) == isinstance(wanted, bool) and value == wanted


def matches(event_filter: EventFilter, point: Point) -> bool:
    return (
        (event_filter.type is None or point.type == event_filter.type)
        and (event_filter.channel is None or point.channel == event_filter.channel)
        and all(_same(point.values.get(name), wanted) for name, wanted in event_filter.properties.items())
    )


# Sums are exact, then rounded once, so the order touches were added in cannot change a sum. Every number
# a touch can carry is a whole multiple of 2**-1074 (the smallest float): scaled by 2**1074 they add as ints.
SUM_SCALE = 1 << 1074


def scaled(value: float) -> int:
    numerator, denominator = value.as_integer_ratio()
    return numerator * (SUM_SCALE // denominator)


def rounded(total: int) -> float:
    """An exact scaled sum as the float nearest to it (Python's int division rounds correctly)."""
    try:
        return total / SUM_SCALE
    except OverflowError:
        return math.inf if total > 0 else -math.inf


class History(Protocol):
    """A customer's touches as rules read them (digest.Digest keeps them indexed)."""

    def count(self, event_filter: EventFilter, start: int, end: int) -> int:
        """Touches matching the filter in (start, end]."""
        ...

    def total(self, measure: MeasureFilter, start: int, end: int) -> float:
        """The exact sum (rounded once, see SUM_SCALE) of the measured property's numbers (bools are not
        numbers) of matching touches in (start, end]."""
        ...

    def extreme(self, measure: MeasureFilter, start: int, end: int, largest: bool) -> float | None:
        """The largest (or smallest) of those numbers; None when there are none."""
        ...


def holds(rule: Rule, history: History, now: int) -> bool:
    """Whether the rule is true for these touches at `now`."""
    if isinstance(rule, AllRule):
        return all(holds(child, history, now) for child in rule.all)
    if isinstance(rule, AnyRule):
        return any(holds(child, history, now) for child in rule.any)
    if isinstance(rule, NotRule):
        return not holds(rule.not_, history, now)
    start = now - duration_seconds(str(window_of_node(rule))) * MICROS
    if isinstance(rule, CountRule):
        return rule.accepts(history.count(rule.count, start, now))
    if isinstance(rule, SumRule):
        return rule.accepts(history.total(rule.sum, start, now))
    if isinstance(rule, MinRule | MaxRule):
        extreme = history.extreme(_measure(rule), start, now, largest=isinstance(rule, MaxRule))
        return extreme is not None and rule.accepts(extreme)
    return (history.count(rule.last, start, now) > 0) == (rule.within is not None)


def rule_problems(
    rule: Rule, horizon_seconds: int, path: str = "rule", depth: int = 1
) -> list[tuple[str, str]]:
    """What validation of one node cannot see: nesting depth, and windows longer than the digest keeps."""
    if depth > MAX_RULE_DEPTH:
        return [(path, f"rules nest at most {MAX_RULE_DEPTH} deep")]
    problems = []
    length = window_of_node(rule)
    if length is not None and duration_seconds(length) > horizon_seconds:
        problems.append((path, f"the window {length} is longer than the history kept ({horizon_seconds}s)"))
    for child_path, child in labelled_children(rule, path):
        problems += rule_problems(child, horizon_seconds, child_path, depth + 1)
    return problems
