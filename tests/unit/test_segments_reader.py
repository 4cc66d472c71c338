"""The evaluator's fast reader of the allowed stream agrees with the validating decoder."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.segments.domain import MergeNotice, item_of, parse_allowed
from shared.events import AbsorbedMarker, AllowedTouch, EraseMarker, ProfileMerged, Purpose, TouchEvent
from shared.serialization import decode_allowed, encode
from tests.strategies import storable_text

AT = datetime(2026, 11, 22, tzinfo=UTC)


@given(
    occurred_at=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    properties=st.dictionaries(
        st.sampled_from(["amount", "path", "other"]),
        st.none()
        | st.booleans()
        | st.integers(-(2**53), 2**53)
        | st.floats(allow_nan=False, allow_infinity=False)
        | storable_text(8),
    ),
    referenced=st.frozensets(st.sampled_from(["amount", "path", "missing"])),
    purposes=st.frozensets(st.sampled_from(list(Purpose)), min_size=1),
    erase_it=st.booleans(),
)
def test_the_fast_reader_agrees_with_the_validating_decoder(
    occurred_at: datetime,
    properties: dict[str, object],
    referenced: frozenset[str],
    purposes: frozenset[Purpose],
    erase_it: bool,
) -> None:
    event = TouchEvent.model_validate(
        {
            "event_id": "e-1",
            "customer_id": "ann",
            "type": "purchase",
            "channel": "web",
            "occurred_at": occurred_at,
            "received_at": AT,
            "source": "t",
            "properties": properties,
        }
    )
    record: AllowedTouch | EraseMarker = (
        EraseMarker(customer_id="ann", purposes=purposes, change_id="c", at=AT)
        if erase_it
        else AllowedTouch(event=event, purposes=purposes)
    )
    wire = encode(record)
    assert (
        parse_allowed(wire, referenced)
        == item_of(decode_allowed(wire), referenced)
        == item_of(record, referenced)
    )


def test_the_fast_reader_refuses_an_unknown_version() -> None:
    with pytest.raises(ValueError, match="version"):
        parse_allowed(b'{"schema_version": 2, "kind": "erase"}', frozenset())


@pytest.mark.parametrize(
    ("purposes", "allowed"),
    [(frozenset(Purpose), True), (frozenset({Purpose.PROFILING}), False), (frozenset(), False)],
)
def test_both_sides_of_a_merge_are_read_with_what_the_survivors_consent_lets_segments_use(
    purposes: frozenset[Purpose], allowed: bool
) -> None:
    sealing = ProfileMerged(
        change_id="e-9:0",
        customer_id="profile:x",
        survivor="ann",
        identifier_kind="email",
        identifier_value="ann@example.com",
        caused_by="e-9",
        at=AT,
    )
    absorbing = AbsorbedMarker(
        change_id="e-9:0", customer_id="ann", absorbed="profile:x", at=AT, purposes=purposes
    )
    assert parse_allowed(encode(sealing), frozenset()) == MergeNotice("profile:x", "ann", True, True)
    notice = parse_allowed(encode(absorbing), frozenset())
    assert notice == MergeNotice("profile:x", "ann", sealed=False, allowed=allowed)
    assert isinstance(notice, MergeNotice)
    assert notice.customer_id == "ann"
