"""The timeline's pure rules: batch planning (checked against the shared consent model) and cursors."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.timeline.domain import BatchPlan, Cursor, item_of, parse_allowed, plan_batch, split_values
from shared.events import (
    AbsorbedMarker,
    AllowedTouch,
    EraseMarker,
    ProfileMerged,
    ProfileSplit,
    Purpose,
    TouchEvent,
)
from shared.serialization import decode_allowed, encode
from tests.consent_model import ProjectionModel
from tests.strategies import storable_text

AT = datetime(2026, 11, 22, tzinfo=UTC)
PROFILING, MARKETING = Purpose.PROFILING, Purpose.MARKETING


def touch(
    event_id: str, customer: str, purposes: frozenset[Purpose] = frozenset({PROFILING})
) -> AllowedTouch:
    event = TouchEvent(
        event_id=event_id,
        customer_id=customer,
        type="purchase",
        channel="web",
        occurred_at=AT,
        received_at=AT,
        source="t",
        properties={"amount": 3},
    )
    return AllowedTouch(event=event, purposes=purposes)


def erase(customer: str, purposes: frozenset[Purpose] = frozenset({PROFILING})) -> EraseMarker:
    return EraseMarker(customer_id=customer, purposes=purposes, change_id="c", at=AT)


def plan(records: Sequence[AllowedTouch | EraseMarker]) -> BatchPlan:
    return plan_batch([item_of(record) for record in records])


def test_an_erase_marker_cancels_earlier_rows_of_its_customer_and_keeps_later_ones() -> None:
    planned = plan([touch("a1", "ann"), touch("b1", "ben"), erase("ann"), touch("a2", "ann")])
    assert planned.erase == {"ann"}
    assert sorted(planned.rows) == [("ann", "a2"), ("ben", "b1")]


def test_only_touches_allowed_for_profiling_are_projected() -> None:
    planned = plan([touch("x", "ann", frozenset({MARKETING})), touch("y", "ann")])
    assert list(planned.rows) == [("ann", "y")]


def test_a_marketing_withdrawal_does_not_touch_the_timeline() -> None:
    assert plan([touch("x", "ann"), erase("ann", frozenset({MARKETING}))]).erase == set()


def test_duplicates_within_a_batch_become_one_row() -> None:
    assert len(plan([touch("x", "ann"), touch("x", "ann")]).rows) == 1


def apply(stored: dict[str, set[str]], plan: BatchPlan) -> None:
    """What the store does with a plan, on a dict: delete erased customers, then insert if absent."""
    for customer in plan.erase:
        stored.pop(customer, None)
    for customer, event_id in plan.rows:
        stored.setdefault(customer, set()).add(event_id)


records = st.lists(
    st.one_of(
        st.builds(
            touch,
            st.sampled_from(["e1", "e2", "e3", "e4"]),
            st.sampled_from(["ann", "ben"]),
            st.sampled_from([frozenset({PROFILING}), frozenset({MARKETING}), frozenset(Purpose)]),
        ),
        st.builds(
            erase,
            st.sampled_from(["ann", "ben"]),
            st.sampled_from([frozenset({PROFILING}), frozenset({MARKETING})]),
        ),
    ),
    max_size=30,
)


@given(stream=records, cuts=st.lists(st.integers(0, 30), max_size=5))
def test_any_batching_of_a_stream_stores_what_the_reference_projection_holds(
    stream: list[AllowedTouch | EraseMarker], cuts: list[int]
) -> None:
    bounds = sorted({0, len(stream), *(cut for cut in cuts if cut <= len(stream))})
    stored: dict[str, set[str]] = {}
    for start, end in pairwise(bounds):
        apply(stored, plan(stream[start:end]))
    expected = ProjectionModel("timeline").apply_all(stream).holdings()
    assert {customer: ids for customer, ids in stored.items() if ids} == expected


def test_cursors_round_trip_and_reject_forgeries() -> None:
    cursor = Cursor(AT - timedelta(days=3), "evt:1")
    assert Cursor.decode(cursor.encode()) == cursor
    for forged in ("", "abc", "W10", "bm90IGpzb24", Cursor(AT, "x").encode()[:-3]):
        with pytest.raises(ValueError, match="cursor"):
            Cursor.decode(forged)


def test_filter_values_may_be_comma_separated_or_repeated() -> None:
    assert split_values(["purchase,email.opened", " support.call ", ""]) == {
        "purchase",
        "email.opened",
        "support.call",
    }
    assert split_values(None) == frozenset()


@given(
    occurred_at=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    properties=st.dictionaries(
        storable_text(10), st.none() | st.integers(-(2**53), 2**53) | storable_text(8)
    ),
    purposes=st.frozensets(st.sampled_from(list(Purpose)), min_size=1),
    erase_it=st.booleans(),
)
def test_the_fast_reader_agrees_with_the_validating_decoder(
    occurred_at: datetime,
    properties: dict[str, str | int | None],
    purposes: frozenset[Purpose],
    erase_it: bool,
) -> None:
    event = touch("e", "ann").event.model_copy(update={"occurred_at": occurred_at, "properties": properties})
    record = erase("ann", purposes) if erase_it else AllowedTouch(event=event, purposes=purposes)
    wire = encode(record)
    assert parse_allowed(wire) == item_of(decode_allowed(wire)) == item_of(record)


def test_the_fast_reader_refuses_an_unknown_version() -> None:
    with pytest.raises(ValueError, match="version"):
        parse_allowed(b'{"schema_version": 2, "kind": "erase"}')


def test_merge_notices_move_nothing_in_the_timeline_which_joins_merged_profiles_when_read() -> None:
    sealing = ProfileMerged(
        change_id="e-9:0",
        customer_id="profile:x",
        survivor="ann",
        identifier_kind="email",
        identifier_value="ann@example.com",
        caused_by="e-9",
        at=AT,
    )
    absorbing = AbsorbedMarker(change_id="e-9:0", customer_id="ann", absorbed="profile:x", at=AT, purposes=[])
    for notice in (sealing, absorbing):
        assert parse_allowed(encode(notice)) is None
        assert item_of(decode_allowed(encode(notice))) is None
    batch = plan_batch([item_of(touch("e-1", "profile:x")), None, item_of(touch("e-2", "ann"))])
    assert sorted(batch.rows) == [("ann", "e-2"), ("profile:x", "e-1")]


def test_a_split_detaches_its_touches_from_the_profiles_it_names_and_from_the_batch() -> None:
    split = ProfileSplit(
        change_id="s-1:0",
        customer_id="ann",
        split_off="profile:card",
        identifier_kind="loyalty_card",
        identifier_value="L-1",
        event_ids=["e-1", "e-2"],
        detached_from=["profile:old"],
        caused_by="s-1",
        at=AT,
    )
    assert parse_allowed(encode(split)) == item_of(decode_allowed(encode(split)))
    records = [touch("e-1", "ann"), touch("e-3", "ann"), touch("e-1", "profile:card")]
    batch = plan_batch([*map(item_of, records[:2]), parse_allowed(encode(split)), item_of(records[2])])
    assert sorted(batch.rows) == [("ann", "e-3"), ("profile:card", "e-1")]
    [detached] = batch.detach
    assert (detached.customer_ids, detached.event_ids) == (("ann", "profile:old"), frozenset({"e-1", "e-2"}))
