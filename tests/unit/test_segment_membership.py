"""The incremental evaluator against a from-scratch evaluation of the whole history, at every step.

The model drives the pure domain the way the worker does: touches, clock advances that wake only the
customers whose next boundary has passed (the timer), definition changes followed by a backfill of every
known customer, and consent revocations. After each step the members it reports must equal the rules
evaluated from scratch over everything that customer did, and the change stream must alternate
entered/exited per customer and segment.
"""

from collections import defaultdict
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.segments.digest import Digest
from services.segments.domain import (
    Change,
    CustomerState,
    MergeNotice,
    next_change_at,
    on_merge,
    on_revocation,
    on_split,
    on_touch,
    settle,
)
from services.segments.evaluation import MICROS, Definitions, Point, holds, with_definition
from shared.events import MembershipReason, MembershipTransition
from shared.rules import Rule, SegmentDefinition
from tests.segments_support import Scan

HORIZON = 120 * MICROS
START = 1_800_000_000 * MICROS
CUSTOMERS = ("c1", "c2", "c3")
SEGMENTS = ("s1", "s2", "s3")


def leaf_rules() -> st.SearchStrategy[dict[str, object]]:
    window = st.sampled_from(["10s", "30s", "1m", "2m"])
    event_filter = st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["view", "purchase"]),
            "channel": st.sampled_from(["web", "store"]),
            "properties": st.sampled_from([{"tier": "gold"}, {"tier": "silver"}]),
        },
    )
    threshold = st.integers(1, 3)
    counted = st.builds(
        lambda f, w, n: {"count": {**f, "within": w}, "gte": n}, event_filter, window, threshold
    )
    at_most = st.builds(
        lambda f, w, n: {"count": {**f, "within": w}, "lte": n}, event_filter, window, threshold
    )
    summed = st.builds(
        lambda f, w, op, n: {op: {**f, "property": "amount", "within": w}, "gte": n},
        event_filter,
        window,
        st.sampled_from(["sum", "min", "max"]),
        st.integers(0, 60),
    )
    recent = st.builds(
        lambda f, w, bound: {"last": f, bound: w},
        event_filter,
        window,
        st.sampled_from(["within", "not_within"]),
    )
    return st.one_of(counted, at_most, summed, recent)


def rules() -> st.SearchStrategy[dict[str, object]]:
    return st.recursive(
        leaf_rules(),
        lambda inner: st.one_of(
            st.builds(lambda rs: {"all": rs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda rs: {"any": rs}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda r: {"not": r}, inner),
        ),
        max_leaves=4,
    )


def touches() -> st.SearchStrategy[tuple[str, str, Point]]:
    # The event id decides the whole touch, so a resend is the same touch.
    def touch(customer: str, number: int, offset: int) -> tuple[str, str, Point]:
        values = {"amount": (number * 7) % 40, "tier": "gold" if number % 2 else "silver"}
        kind, channel = ("purchase", "store") if number % 3 == 0 else ("view", "web")
        return "touch", customer, Point(offset * MICROS, number, kind, channel, values)

    return st.builds(touch, st.sampled_from(CUSTOMERS), st.integers(0, 30), st.integers(-130, 15))


definitions = st.tuples(st.just("define"), st.sampled_from(SEGMENTS), rules(), st.booleans())
advances = st.tuples(st.just("advance"), st.integers(1, 45))
# Touches and clock advances carry the rules; definition changes and revocations come less often.
steps = st.one_of(
    touches(),
    advances,
    touches(),
    advances,
    definitions,
    st.tuples(st.just("revoke"), st.sampled_from(CUSTOMERS)),
    st.tuples(st.just("merge"), st.sampled_from(CUSTOMERS), st.sampled_from(CUSTOMERS), st.booleans()),
    st.tuples(st.just("split"), st.sampled_from(CUSTOMERS), st.integers(0, 2)),
)
scripts = st.builds(
    lambda first, rest: first + rest,
    st.lists(definitions.filter(lambda step: not step[3]), min_size=1, max_size=3),
    st.lists(steps, min_size=5, max_size=50),
)


class Model:
    """The incremental evaluator as the worker runs it, and the whole history beside it."""

    def __init__(self) -> None:
        self.now = START
        self.definitions = Definitions()
        self.versions: dict[str, int] = defaultdict(int)
        self.states: dict[str, CustomerState] = {}
        self.history: dict[str, dict[int, Point]] = {}
        self.changes: list[Change] = []
        self.sent: dict[tuple[str, int], Point] = {}

    def record(self, customer: str, state: CustomerState | None, changes: list[Change]) -> None:
        self.changes += changes
        if state is None:
            self.states.pop(customer, None)
        else:
            self.states[customer] = state

    def tick(self) -> None:
        """Like the worker, which evaluates every input at its own microsecond."""
        self.now += 1

    def touch(self, customer: str, point: Point) -> None:
        self.tick()
        # A resend is the same touch: it keeps the time it was first sent with.
        arrived = self.sent.setdefault((customer, point.key), point._replace(at=self.now + point.at))
        self.history.setdefault(customer, {}).setdefault(arrived.key, arrived)
        outcome = on_touch(self.states.get(customer), self.definitions, arrived, customer, self.now, HORIZON)
        self.record(customer, outcome.state, outcome.changes)

    def advance(self, seconds: int) -> None:
        self.now += seconds * MICROS
        for customer, state in list(self.states.items()):
            due = next_change_at(state, self.definitions)
            if due is not None and due <= self.now:
                outcome = settle(state, self.definitions, self.now)
                self.record(customer, outcome.state, outcome.changes)

    def define(self, segment_id: str, rule: dict[str, object], deleted: bool) -> None:
        self.tick()
        self.versions[segment_id] += 1
        record = SegmentDefinition.model_validate(
            {
                "segment_id": segment_id,
                "version": self.versions[segment_id],
                "name": segment_id,
                "rule": rule,
                "deleted": deleted,
                "changed_at": datetime.fromtimestamp(self.now / MICROS, UTC),
            }
        )
        self.definitions = with_definition(self.definitions, record, self.definitions.revision)
        for customer, state in list(self.states.items()):  # the backfill
            outcome = settle(state, self.definitions, self.now)
            self.record(customer, outcome.state, outcome.changes)

    def revoke(self, customer: str) -> None:
        self.tick()
        outcome = on_revocation(self.states.get(customer), self.definitions, self.now)
        self.record(customer, outcome.state, outcome.changes)
        self.history.pop(customer, None)

    def merge(self, absorbed: str, survivor: str, allowed: bool) -> None:
        """An identity merge, both sides in: the survivor's history becomes both histories (when its
        consent lets segments use them), and the absorbed profile is gone."""
        if absorbed == survivor:
            return
        self.tick()
        notice = MergeNotice(absorbed, survivor, sealed=True, allowed=allowed)
        before = (self.states.get(absorbed), self.states.get(survivor))
        leaving, joined = on_merge(*before, notice, self.definitions, self.now, HORIZON)
        self.record(absorbed, leaving.state, leaving.changes)
        self.record(survivor, joined.state, joined.changes)
        taken = self.history.pop(absorbed, {})
        if allowed and before[0] is not None:
            self.history[survivor] = {**taken, **self.history.get(survivor, {})}
        caught_up = MembershipReason.WINDOW_EXPIRED  # boundaries passed on the way are what they are
        merged = [c for c in leaving.changes + joined.changes if c.reason != caught_up]
        assert all(c.reason == MembershipReason.IDENTITY_MERGED for c in merged)

    def split(self, customer: str, remainder: int) -> None:
        """An identifier split off: the touches it decided (here, those whose key leaves `remainder`
        modulo 3) leave the customer's history."""
        self.tick()
        keys = frozenset(key for key in self.history.get(customer, {}) if key % 3 == remainder)
        outcome = on_split(self.states.get(customer), keys, self.definitions, self.now)
        self.record(customer, outcome.state, outcome.changes)
        if customer in self.history:
            self.history[customer] = {k: p for k, p in self.history[customer].items() if k not in keys}
        caught_up = MembershipReason.WINDOW_EXPIRED
        assert all(
            c.reason == MembershipReason.IDENTITY_SPLIT for c in outcome.changes if c.reason != caught_up
        )

    def from_scratch(self, customer: str) -> set[str]:
        """Segments are about known customers: those with a touch since their last revocation."""
        if customer not in self.history:
            return set()
        history = Scan(tuple(self.history[customer].values()))
        return {s.segment_id for s in self.definitions.live() if holds(s.rule, history, self.now)}


def check(model: Model) -> None:
    for customer in CUSTOMERS:
        state = model.states.get(customer)
        assert (state is not None) == (customer in model.history)
        reported = set(state.members) if state else set()
        assert reported == model.from_scratch(customer), customer
    last: dict[tuple[str, str], MembershipTransition] = {}
    for change in model.changes:
        key = (change.customer_id, change.segment_id)
        is_member = last.get(key) == MembershipTransition.ENTERED
        expected = MembershipTransition.EXITED if is_member else MembershipTransition.ENTERED
        assert change.transition == expected, f"{change} after {last.get(key)}"
        last[key] = change.transition
    assert len({change.change_id for change in model.changes}) == len(model.changes)


@settings(max_examples=500, deadline=None)
@given(scripts)
def test_incremental_membership_equals_a_from_scratch_evaluation_at_every_step(
    script: list[tuple[object, ...]],
) -> None:
    model = Model()
    for step in script:
        kind, *arguments = step
        getattr(model, str(kind))(*arguments)
        check(model)


def test_a_window_expiry_exits_at_the_exact_boundary_without_a_new_event() -> None:
    model = Model()
    model.define("s1", {"count": {"type": "purchase", "within": "30s"}, "gte": 1}, False)
    model.touch("c1", Point(0, 3, "purchase", "store", {}))
    model.advance(29)
    assert model.states["c1"].members == {"s1": 1}
    model.advance(5)
    exit_change = model.changes[-1]
    assert (exit_change.transition, exit_change.reason) == ("exited", "window_expired")
    assert exit_change.at == START + 2 + 30 * MICROS  # definition and touch each took a microsecond


def test_rules_only_look_at_the_window_ending_now() -> None:
    rule: Rule = SegmentDefinition.model_validate(
        {
            "segment_id": "s",
            "version": 1,
            "name": "s",
            "rule": {"sum": {"type": "purchase", "property": "amount", "within": "10s"}, "gte": 5},
            "changed_at": "2026-11-22T00:00:00Z",
        }
    ).rule
    first, second = {"amount": 3}, {"amount": 2}
    points = Digest([Point(0, 1, "purchase", "web", first), Point(5 * MICROS, 2, "purchase", "web", second)])
    assert holds(rule, points, 9 * MICROS)
    assert not holds(rule, points, 10 * MICROS)  # the first purchase left the window (now - 10s, now]
    assert not holds(rule, points, 4 * MICROS)  # the second has not happened yet
