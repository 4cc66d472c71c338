"""Identifiers on a touch: one normal form per kind, clear refusals, and the version 1 -> 2 upcaster."""

from typing import Any

import pytest
from pydantic import ValidationError

from shared.events import TouchEvent, TouchEventIn
from shared.identities import MAX_IDENTITIES, normalized

TOUCH = {
    "event_id": "e-1",
    "type": "page.viewed",
    "channel": "web",
    "occurred_at": "2026-11-22T11:00:00Z",
}


def reason_for(identities: Any) -> str:
    with pytest.raises(ValidationError) as refused:
        TouchEventIn.model_validate(TOUCH | {"identities": identities})
    [error] = refused.value.errors()
    assert error["loc"] == ("identities",)
    return str(error["msg"])


@pytest.mark.parametrize(
    ("kind", "value", "normal"),
    [
        ("email", "  Ada.Lovelace@Example.COM ", "ada.lovelace@example.com"),
        ("phone", "+49 151 1234-5678", "+4915112345678"),
        ("phone", "+1 (650) 253-0000", "+16502530000"),
        ("anonymous_id", " 3f0c-77aa ", "3f0c-77aa"),
        ("loyalty_card", "L-0042", "L-0042"),
    ],
)
def test_each_kind_has_one_normal_form(kind: str, value: str, normal: str) -> None:
    assert normalized(kind, value) == normal
    assert TouchEventIn.model_validate(TOUCH | {"identities": {kind: value}}).identities == {kind: normal}


@pytest.mark.parametrize(
    ("identities", "reason"),
    [
        ({"email": "ada at example.com"}, "email is not an email address"),
        ({"phone": "0151 1234 5678"}, "phone is not a phone number in international form"),
        ({"phone": "+49 1"}, "phone is not a phone number in international form"),
        ({"anonymous_id": "   "}, "anonymous_id is empty"),
        ({"anonymous_id": "a\nb"}, "holds a control character"),
        ({"anonymous_id": "a\0b"}, "holds a control character"),
        ({"anonymous_id": "x" * 257}, "longer than 256"),
        ({"customer_id": "c-1"}, "send it in the touch's own customer_id field"),
        ({"Loyalty Card": "L-1"}, "is not a lowercase word"),
        ({f"kind_{n}": "v" for n in range(MAX_IDENTITIES + 1)}, f"at most {MAX_IDENTITIES}"),
        ({}, "names nobody: send customer_id, identities, or both"),
    ],
)
def test_a_value_that_cannot_be_normalized_is_refused_with_its_rule(
    identities: dict[str, str], reason: str
) -> None:
    assert reason in reason_for(identities)


def test_a_touch_may_name_a_customer_identities_or_both() -> None:
    assert TouchEventIn.model_validate(TOUCH | {"customer_id": "c-1"}).identities == {}
    both = TouchEventIn.model_validate(TOUCH | {"customer_id": "c-1", "identities": {"email": "a@b.io"}})
    assert (both.customer_id, both.identities) == ("c-1", {"email": "a@b.io"})


LOGGED = TOUCH | {
    "customer_id": "c-1",
    "properties": {},
    "kind": "touch",
    "received_at": "2026-11-22T11:00:01Z",
    "source": "shop",
}


def test_a_version_1_record_is_upcast_to_a_version_2_touch_naming_no_identities() -> None:
    upcast = TouchEvent.model_validate(LOGGED | {"schema_version": 1})
    assert (upcast.schema_version, upcast.identities) == (2, {})
    assert upcast == TouchEvent.model_validate(LOGGED | {"schema_version": 2})


def test_a_version_1_record_naming_identities_is_not_a_touch_of_any_version() -> None:
    with pytest.raises(ValidationError, match="a version 1 touch names no identities"):
        TouchEvent.model_validate(LOGGED | {"schema_version": 1, "identities": {"email": "a@b.io"}})
