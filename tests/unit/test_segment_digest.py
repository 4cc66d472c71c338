"""The indexed digest against a scan of every touch, and against itself saved and loaded again.

Expired touches are dropped lazily, so questions are asked as the evaluator asks them: windows that begin
no earlier than the oldest time kept, and boundaries after the customer was settled.
"""

import itertools
from collections.abc import Callable
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from services.segments.cache import DigestCache
from services.segments.digest import Digest
from services.segments.evaluation import Point
from shared.rules import EventFilter, MeasureFilter
from tests.segments_support import Scan

WINDOWS = (5, 20, 60)


def points() -> st.SearchStrategy[Point]:
    # Few event ids, so resends (the same key, hence the same time) are common, and so are different
    # touches at one time; values include bools, which are not numbers.
    return st.builds(
        lambda key, kind, channel, amount: Point(key * 37 % 71, key, kind, channel, {"amount": amount}),
        st.integers(0, 60),
        st.sampled_from(["view", "purchase"]),
        st.sampled_from(["web", "store"]),
        st.one_of(st.integers(0, 9), st.floats(0, 9, allow_nan=False), st.booleans()),
    )


filters = st.builds(
    lambda kind, channel, amount: {
        k: v for k, v in {"type": kind, "channel": channel, "properties": amount}.items() if v is not None
    },
    st.one_of(st.none(), st.sampled_from(["view", "purchase"])),
    st.one_of(st.none(), st.sampled_from(["web", "store"])),
    st.one_of(st.none(), st.sampled_from([{"amount": 1}, {"amount": True}])),
)
adds = st.tuples(st.just("add"), points())
steps = st.lists(st.one_of(adds, adds, adds, st.tuples(st.just("expire"), st.integers(0, 100))), max_size=80)


class Stored:
    """The store as the evaluator uses it, every save applied to the rows (with rows of three touches)."""

    def __init__(self) -> None:
        self.rows: list[list[Point]] = []
        self.recent: list[Point] = []

    def save(self, digest: Digest) -> None:
        self.recent, flushed, expired_through = digest.saved(flush_at=3)
        if flushed:
            self.rows.append(flushed)
        if expired_through is not None:
            self.rows = [row for row in self.rows if max(point.at for point in row) > expired_through]

    def points(self) -> list[Point]:
        return [point for row in self.rows for point in row] + self.recent

    def load(self) -> Digest:
        return Digest([point for row in self.rows for point in row], self.recent)


def replay(
    script: list[tuple[str, object]], ask: Callable[[Digest], object] = len
) -> tuple[Digest, list[Point], int, Stored]:
    """Runs the script on a digest, asking it `ask` between steps (so indexes exist while it changes)."""
    digest, kept, oldest, stored = Digest(), dict[int, Point](), -1, Stored()
    for number, (kind, argument) in enumerate(script):
        ask(digest)
        if kind == "expire":
            assert isinstance(argument, int)
            oldest = max(oldest, argument)
            digest.expire(oldest)
            kept = {key: point for key, point in kept.items() if point.at > oldest}
        else:
            assert isinstance(argument, Point)
            added = digest.add(argument, oldest)
            assert added == (argument.at > oldest and argument.key not in kept)
            if added:
                kept[argument.key] = argument
        if number % 3 == 0:
            stored.save(digest)
    stored.save(digest)
    return digest, list(kept.values()), oldest, stored


@settings(max_examples=300, deadline=None)
@given(steps, filters)
def test_a_digest_answers_as_a_scan_of_the_touches_it_keeps(
    script: list[tuple[str, object]], written: dict[str, object]
) -> None:
    event_filter = EventFilter.model_validate(written)
    # The drawn filter, and every touch: most drawn filters match few touches.
    measures = [
        MeasureFilter.model_validate({**filtered, "property": "amount", "within": "1s"})
        for filtered in (written, {})
    ]

    def ask(asked: Digest) -> object:
        return asked.count(event_filter, 0, 1), [asked.extreme(m, 0, 1, largest=True) for m in measures]

    digest, kept, oldest, stored = replay(script, ask)
    scan = Scan(kept)
    for history in (digest, stored.load()):
        for end in range(oldest, 230, 3):
            for window in WINDOWS:
                start = max(end - window, oldest)
                assert history.count(event_filter, start, end) == scan.count(event_filter, start, end)
                for measure, largest in itertools.product(measures, (True, False)):
                    expected = scan.extreme(measure, start, end, largest)
                    assert history.extreme(measure, start, end, largest) == expected
                    assert history.total(measure, start, end) == scan.total(measure, start, end)
            after = end + max(WINDOWS)
            assert history.next_boundary(WINDOWS, after) == scan.next_boundary(WINDOWS, after)


@given(steps)
def test_the_store_holds_what_the_digest_keeps_once_expired_touches_are_dropped(
    script: list[tuple[str, object]],
) -> None:
    digest, kept, oldest, stored = replay(script)
    assert {p.key for p in stored.points() if p.at > oldest} == {p.key for p in kept}
    assert len(stored.recent) < 3
    assert {p.key for p in digest.points if p.at > oldest} == {p.key for p in kept}


def test_sums_are_exact_whatever_order_touches_arrive_in() -> None:
    measure = MeasureFilter.model_validate({"property": "amount", "within": "1s"})
    amounts = [0.1, 1e17, 0.2, -1e17, 0.3]
    forward = Digest(Point(at, at, "purchase", "web", {"amount": a}) for at, a in enumerate(amounts, 1))
    backward = Digest()
    for at, amount in reversed(list(enumerate(amounts, 1))):
        backward.add(Point(at, at, "purchase", "web", {"amount": amount}), 0)
    exact = float(sum(map(Fraction, amounts)))
    assert forward.total(measure, 0, 10) == backward.total(measure, 0, 10) == exact


def test_a_sum_too_large_for_a_float_is_infinite() -> None:
    measure = MeasureFilter.model_validate({"property": "amount", "within": "1s"})
    digest = Digest(
        [Point(1, 1, "purchase", "web", {"amount": 1e308}), Point(2, 2, "purchase", "web", {"amount": 1e308})]
    )
    assert digest.total(measure, 0, 10) == float("inf")


def digest_of(touches: int) -> Digest:
    return Digest(Point(at, at, "view", "web", {}) for at in range(touches))


def test_the_cache_keeps_the_most_recently_used_digests_within_its_capacity() -> None:
    cache = DigestCache(capacity=10)
    cache.keep("a", 0, digest_of(4), 0)
    cache.keep("b", 1, digest_of(4), 0)
    assert cache.get("a", 0) is not None  # now the most recently used
    cache.keep("c", 2, digest_of(4), 0)
    assert (cache.get("a", 0) is not None, cache.get("b", 0), cache.get("c", 0) is not None) == (
        True,
        None,
        True,
    )
    cache.keep("d", 3, digest_of(11), 0)  # larger than the whole cache: kept by nobody
    assert len(cache) == 0


def test_the_cache_forgets_the_customers_of_a_revoked_partition() -> None:
    cache = DigestCache(capacity=100)
    for number, customer in enumerate("abcd"):
        cache.keep(customer, number % 2, digest_of(1), 0)
    cache.drop_partitions([1])
    assert [customer for customer in "abcd" if cache.get(customer, 0)] == ["a", "c"]


def test_a_digest_cached_before_another_worker_merged_into_it_is_not_used() -> None:
    cache = DigestCache(capacity=100)
    cache.keep("a", 0, digest_of(2), epoch=3)
    assert cache.get("a", 4) is None
    assert cache.get("a", 3) is not None
