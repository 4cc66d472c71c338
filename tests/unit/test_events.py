"""The wire contract: what a valid touch is, and what each rule says when it is broken."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.events import (
    MAX_PROPERTIES_BYTES,
    ConsentChange,
    MembershipReason,
    PlatformStamp,
    SegmentMembershipChange,
    TouchEvent,
    TouchEventIn,
)
from shared.serialization import (
    decode,
    decode_customer_log,
    encode,
    encode_stamped,
)
from tests.strategies import storable_text

GOOD: dict[str, Any] = {
    "event_id": "shop-order-1",
    "customer_id": "cust-00042",
    "type": "email.opened",
    "channel": "email",
    "occurred_at": "2026-11-22T10:15:00+01:00",
    "properties": {"campaign": "winter-sale"},
}


def errors_of(**changes: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as raised:
        TouchEventIn.model_validate(GOOD | changes)
    return {".".join(map(str, error["loc"])): error["msg"] for error in raised.value.errors()}


def test_a_good_event_is_accepted_and_normalised_to_utc() -> None:
    event = TouchEventIn.model_validate(GOOD)
    assert event.occurred_at == datetime(2026, 11, 22, 9, 15, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC


@pytest.mark.parametrize("field", ["event_id", "customer_id"])
@pytest.mark.parametrize("bad", ["", "has space", "slash/no", "ümlaut", "x" * 129])
def test_identifiers_allow_only_1_to_128_safe_characters(field: str, bad: str) -> None:
    assert field in errors_of(**{field: bad})


@pytest.mark.parametrize("good", ["a", "A.b_c:d-9", "x" * 128])
def test_identifier_edges_are_accepted(good: str) -> None:
    TouchEventIn.model_validate(GOOD | {"event_id": good, "customer_id": good})


def test_identifier_error_says_the_rule_in_words() -> None:
    assert "letters, digits and . _ : -" in errors_of(event_id="a b")["event_id"]


@pytest.mark.parametrize("bad", ["Purchase", "email..opened", ".x", "x.", "email-opened", "1abc", ""])
def test_type_is_lowercase_and_dotted(bad: str) -> None:
    assert "type" in errors_of(type=bad)


@pytest.mark.parametrize("good", ["purchase", "email.opened", "support.call", "app.push_sent.v2"])
def test_dotted_types_are_accepted(good: str) -> None:
    TouchEventIn.model_validate(GOOD | {"type": good})


@pytest.mark.parametrize("bad", ["Web", "call center", "e-mail", ""])
def test_channel_is_a_lowercase_word(bad: str) -> None:
    assert "channel" in errors_of(channel=bad)


def test_naive_timestamps_are_rejected() -> None:
    assert "timezone" in errors_of(occurred_at="2026-11-22T10:15:00")["occurred_at"]


@pytest.mark.parametrize("bad", [1795380000, 1795380000.5, "yesterday", "2026-13-01T00:00:00Z"])
def test_timestamps_must_be_rfc3339_text(bad: Any) -> None:
    assert "occurred_at" in errors_of(occurred_at=bad)


def test_properties_must_be_an_object() -> None:
    assert "properties" in errors_of(properties=[1, 2])


def test_properties_up_to_32_kib_are_accepted_and_one_byte_more_is_not() -> None:
    overhead = len('{"k":""}')
    TouchEventIn.model_validate(GOOD | {"properties": {"k": "x" * (MAX_PROPERTIES_BYTES - overhead)}})
    message = errors_of(properties={"k": "x" * (MAX_PROPERTIES_BYTES - overhead + 1)})["properties"]
    assert "32769 bytes" in message
    assert "32768" in message


@pytest.mark.parametrize("platform_field", ["received_at", "source", "kind"])
def test_clients_cannot_set_platform_fields(platform_field: str) -> None:
    assert platform_field in errors_of(**{platform_field: "web"})


def test_unknown_fields_are_rejected() -> None:
    assert "amount" in errors_of(amount=3)


def test_events_are_immutable() -> None:
    event = TouchEventIn.model_validate(GOOD)
    with pytest.raises(ValidationError):
        event.type = "purchase"  # type: ignore[misc]


def stamped(**changes: Any) -> TouchEvent:
    return TouchEvent.model_validate(
        GOOD | {"received_at": "2026-11-22T10:16:00Z", "source": "shop"} | changes
    )


def test_customer_log_records_are_told_apart_by_kind() -> None:
    consent = ConsentChange(
        change_id="c-1",
        customer_id="cust-1",
        purpose="marketing",
        status="denied",
        changed_at=datetime(2026, 11, 22, tzinfo=UTC),
        source="dpo",
    )
    assert decode_customer_log(encode(stamped())) == stamped()
    assert decode_customer_log(encode(consent)) == consent


def test_a_customer_log_record_of_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValidationError):
        decode_customer_log(b'{"kind": "mystery"}')


def test_membership_changes_round_trip() -> None:
    change = SegmentMembershipChange(
        change_id="seg-1:v1:cust-1:1",
        segment_id="seg-1",
        segment_version=1,
        customer_id="cust-1",
        transition="entered",
        at="2026-11-22T10:00:00Z",
        reason=MembershipReason.EVENT,
    )
    assert decode(SegmentMembershipChange, encode(change)) == change


identifiers = st.text(alphabet="abcXYZ019._:-", min_size=1, max_size=128)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | storable_text(20)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))


@given(
    event_id=identifiers,
    customer_id=identifiers,
    occurred_at=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets
    ),
    properties=st.dictionaries(storable_text(10), json_scalars, max_size=5),
)
def test_any_valid_event_survives_the_wire_unchanged(
    event_id: str, customer_id: str, occurred_at: datetime, properties: dict[str, Any]
) -> None:
    event = stamped(
        event_id=event_id, customer_id=customer_id, occurred_at=occurred_at.isoformat(), properties=properties
    )
    assert decode_customer_log(encode(event)) == event
    assert event.occurred_at == occurred_at


@pytest.mark.parametrize(
    ("properties", "where"),
    [
        ({"note": "a\0b"}, "properties.note holds a NUL"),
        ({"a\0": 1}, "a key in properties holds a NUL"),
        ({"deep": {"list": [1, {"x": "\0"}]}}, "properties.deep.list.1.x holds a NUL"),
        ({"deep": {"k\0ey": True}}, "a key in properties.deep holds a NUL"),
        ({"amount": float("nan")}, "properties.amount is nan"),
        ({"amount": [float("inf")]}, "properties.amount.0 is inf"),
        ({"amount": float("-inf")}, "properties.amount is -inf"),
    ],
)
def test_unstorable_values_are_refused_naming_where_they_are(properties: dict[str, Any], where: str) -> None:
    assert where in errors_of(properties=properties)["properties"]


@pytest.mark.parametrize("body", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": [1e400]}', b'{"a\\u0000": 1}'])
def test_unstorable_values_in_json_text_are_refused(body: bytes) -> None:
    without_properties = {name: value for name, value in GOOD.items() if name != "properties"}
    text = orjson.dumps(without_properties)[:-1] + b', "properties": ' + body + b"}"
    with pytest.raises(ValidationError) as raised:
        TouchEventIn.model_validate_json(text)
    assert raised.value.errors()[0]["loc"] == ("properties",)


def test_null_and_text_saying_null_are_still_fine() -> None:
    event = TouchEventIn.model_validate(GOOD | {"properties": {"a": None, "b": "null", "c": "\\u0000"}})
    assert event.properties == {"a": None, "b": "null", "c": "\\u0000"}


@pytest.mark.parametrize(
    "occurred_at",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "3000-01-01T00:00:00Z",
    ],
)
def test_instants_outside_what_every_stage_handles_are_a_clear_error(occurred_at: str) -> None:
    assert "between 1970-01-01 and 3000-01-01" in errors_of(occurred_at=occurred_at)["occurred_at"]


def test_numbers_beyond_64_bits_are_a_clear_error_not_a_crash() -> None:
    assert "64-bit" in errors_of(properties={"n": 2**70})["properties"]


@given(
    occurred_at=st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets
    ),
    received_at=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets
    ),
    properties=st.dictionaries(storable_text(10), json_scalars, max_size=5),
    source=identifiers,
)
def test_a_spliced_stamp_decodes_to_the_same_event_as_a_built_model(
    occurred_at: datetime, received_at: datetime, properties: dict[str, Any], source: str
) -> None:
    event = TouchEventIn.model_validate(
        GOOD | {"occurred_at": occurred_at.isoformat(), "properties": properties}
    )
    stamp = encode(PlatformStamp(received_at=received_at, source=source))
    built = TouchEvent(**dict(event), received_at=received_at, source=source)
    assert decode_customer_log(encode_stamped(event, stamp)) == built
