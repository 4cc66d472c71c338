"""A customer's digest: their touches within the horizon, indexed so that a new touch, a rule and the next
boundary each cost O(log n) in the touches kept, not O(n).

Touches are kept ordered by time. Each event filter a rule uses gets, the first time it is asked, the
sorted times of the touches it matches (and, for sum/min/max, their numbers, running totals and the
candidates for extremes); a new touch is inserted into every index it matches. A count or a sum in a
window is then two bisections, and so is a minimum or a maximum over a window that reaches the newest
touch, which is every window but those at a moment before a future-dated touch (those read the numbers
inside the window).

A digest is the one mutable part of a customer's state: copying a long history for every touch is what it
exists to avoid; whoever discards a decision discards its digest with it. Its newest touches are *recent*
(stored with the customer's row, rewritten by each save) until there are FLUSH_AT of them; a save then
moves them into a row of their own that is never rewritten (`saved`). So a save writes at most FLUSH_AT
touches, whatever the customer's history, and most customers never need more than their one row.
"""

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from services.segments.evaluation import Point, matches, rounded, scaled
from shared.rules import EventFilter, MeasureFilter

# Expired touches can no longer count (no window is longer than the horizon), so they are dropped in
# bulk, once they are an eighth of the digest: the cost of a prune is spread over the touches it drops.
PRUNE_FRACTION = 8
FLUSH_AT = 32
NUMBERS = (int, float)  # a tuple is faster to check against than the union `int | float`


class _Extremes:
    """The numbers that can be the largest (sign 1) or smallest (sign -1) of a window reaching the newest
    number: ordered by time, each beats every later one, so the first after a window's start is its answer.
    Values are stored times `sign`."""

    __slots__ = ("ats", "sign", "values")

    def __init__(self, sign: int) -> None:
        self.sign, self.ats, self.values = sign, list[int](), list[float]()

    def insert(self, at: int, number: float) -> None:
        value, position = self.sign * number, bisect_right(self.ats, at)
        if position < len(self.values) and self.values[position] >= value:
            return  # a later number as good is in every window this one is in
        first = position
        while first > 0 and self.values[first - 1] <= value:
            first -= 1  # earlier numbers this one beats are never an answer again
        self.ats[first:position], self.values[first:position] = [at], [value]

    def after(self, start: int) -> float | None:
        position = bisect_right(self.ats, start)
        return self.sign * self.values[position] if position < len(self.values) else None

    def drop_through(self, oldest: int) -> None:
        cut = bisect_right(self.ats, oldest)
        del self.ats[:cut], self.values[:cut]


class _Matching:
    """The times of the touches one filter matches; for a measure, the number each holds and the running
    exact totals (`totals[i]` is the scaled sum of the first i numbers), so a sum is one subtraction."""

    __slots__ = ("ats", "event_filter", "largest", "numbers", "property", "smallest", "totals")

    def __init__(self, event_filter: EventFilter, measured: str | None, points: Iterable[Point]) -> None:
        self.event_filter, self.property = event_filter, measured
        self.ats: list[int] = []
        self.numbers: list[float] = []
        self.totals: list[int] = [0]
        self.largest, self.smallest = _Extremes(1), _Extremes(-1)
        for point in points:
            self.insert(point)

    def insert(self, point: Point) -> None:
        if not matches(self.event_filter, point):
            return
        at = bisect_right(self.ats, point.at)
        if self.property is not None:
            value = point.values.get(self.property)
            if not isinstance(value, NUMBERS) or isinstance(value, bool):
                return
            self.numbers.insert(at, value)
            # A late touch shifts the totals after it: few, since late touches are mostly recent ones.
            added = scaled(value)
            self.totals.insert(at + 1, self.totals[at] + added)
            for later in range(at + 2, len(self.totals)):
                self.totals[later] += added
            self.largest.insert(point.at, value)
            self.smallest.insert(point.at, value)
        self.ats.insert(at, point.at)

    def drop_through(self, oldest: int) -> None:
        cut = bisect_right(self.ats, oldest)
        del self.ats[:cut]
        if self.property is not None:  # totals[cut] becomes the base the remaining sums subtract from
            del self.numbers[:cut], self.totals[:cut]
            self.largest.drop_through(oldest)
            self.smallest.drop_through(oldest)


class Saved(NamedTuple):
    """What a save writes of a digest."""

    recent: list[Point]  # the customer row's touches
    flushed: list[Point]  # a new row of touches, or none
    expired_through: int | None  # rows of touches all at or before this time are deleted


class Digest:
    def __init__(self, points: Iterable[Point] = (), recent: Iterable[Point] = ()) -> None:
        self._recent = list(recent)
        self._points = sorted((*points, *self._recent), key=lambda point: (point.at, point.key))
        self._ats = [point.at for point in self._points]
        self._keys = {point.key for point in self._points}
        # By the filter object's id: an index holds its filter, so while the index lives no other object
        # can have that id. (Equal filters of two segments get an index each; rules are few.)
        self._indexes: dict[tuple[int, str | None], _Matching] = {}
        self._expired_through: int | None = None

    def __len__(self) -> int:
        return len(self._points)

    @property
    def points(self) -> Sequence[Point]:
        return self._points

    def add(self, point: Point, oldest: int) -> bool:
        """Keeps a touch newer than `oldest` that is not already kept (a resend has the same key)."""
        if point.at <= oldest or point.key in self._keys:
            return False
        at = bisect_right(self._ats, point.at)
        self._points.insert(at, point)
        self._ats.insert(at, point.at)
        self._keys.add(point.key)
        for index in self._indexes.values():
            index.insert(point)
        self._recent.append(point)
        return True

    def expire(self, oldest: int) -> None:
        """Forgets touches at or before `oldest`, in bulk (see PRUNE_FRACTION)."""
        cut = bisect_right(self._ats, oldest)
        if cut == 0 or cut * PRUNE_FRACTION < len(self._ats):
            return
        self._keys.difference_update(point.key for point in self._points[:cut])
        del self._points[:cut], self._ats[:cut]
        for index in self._indexes.values():
            index.drop_through(oldest)
        self._recent = [point for point in self._recent if point.at > oldest]
        self._expired_through = max(oldest, self._expired_through or oldest)

    def saved(self, flush_at: int = FLUSH_AT) -> Saved:
        """What the store writes now; the digest takes it as written."""
        flushed = self._recent if len(self._recent) >= flush_at else []
        if flushed:
            self._recent = []
        saved = Saved(list(self._recent), flushed, self._expired_through)
        self._expired_through = None
        return saved

    def count(self, event_filter: EventFilter, start: int, end: int) -> int:
        """Touches matching the filter in (start, end]."""
        ats = self._matching(event_filter, None).ats
        return bisect_right(ats, end) - bisect_right(ats, start)

    def extreme(self, measure: MeasureFilter, start: int, end: int, largest: bool) -> float | None:
        index = self._matching(measure, measure.property)
        if not index.ats or end >= index.ats[-1]:
            return (index.largest if largest else index.smallest).after(start)
        numbers = index.numbers[bisect_right(index.ats, start) : bisect_right(index.ats, end)]
        return (max(numbers) if largest else min(numbers)) if numbers else None

    def total(self, measure: MeasureFilter, start: int, end: int) -> float:
        index = self._matching(measure, measure.property)
        first, last = bisect_right(index.ats, start), bisect_right(index.ats, end)
        return rounded(index.totals[last] - index.totals[first])

    def next_boundary(self, windows: Iterable[int], after: int) -> int | None:
        """The first moment after `after` when a rule may change its truth: a touch's time, or that time
        plus a window length."""
        candidates = []
        for length in (0, *windows):
            first = bisect_right(self._ats, after - length)
            if first < len(self._ats):
                candidates.append(self._ats[first] + length)
        return min(candidates, default=None)

    def _matching(self, event_filter: EventFilter, measured: str | None) -> _Matching:
        key = (id(event_filter), measured)
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = _Matching(event_filter, measured, self._points)
        return index
