"""Identifiers a touch can carry besides `customer_id`, and their one normal form per kind.

Two systems must write the same person the same way for their touches to meet, so every value is
normalized on entry, before anything compares or stores it: an email lowercased and trimmed, a phone in
E.164, anything else trimmed. A value that cannot be normalized is refused with the rule it breaks.
"""

import re
from functools import lru_cache
from typing import Annotated

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, Field, ValidationInfo

ANONYMOUS_ID = "anonymous_id"
EMAIL = "email"
PHONE = "phone"
# Kinds every deployment has; an operator adds its own (TOUCHLINE_IDENTITY_KINDS, e.g. loyalty_card).
BUILT_IN_KINDS = (ANONYMOUS_ID, EMAIL, PHONE)
CUSTOMER_ID = "customer_id"  # not a kind of `identities`: a touch names it in its own field
# A profile no customer id names is called this and a digest. Only such a profile is ever absorbed by a
# merge (a known customer's never is), so only such an id can stand for another profile.
ANONYMOUS_PROFILE = "profile:"


def may_be_absorbed(profile_id: str) -> bool:
    return profile_id.startswith(ANONYMOUS_PROFILE)


MAX_VALUE_LENGTH = 256
MAX_IDENTITIES = 16
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _email(value: str) -> str:
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(f"is not an email address: {error}") from None
    return checked.normalized.lower()


def _phone(value: str) -> str:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise ValueError("is not a phone number in international form, e.g. +4915112345678")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_NORMALIZERS = {EMAIL: _email, PHONE: _phone}


# Normalizing an address costs ~37 us; the same people's identifiers recur on most touches.
@lru_cache(maxsize=65536)
def normalized(kind: str, value: str) -> str:
    """The value in its kind's normal form; ValueError says which rule it breaks."""
    trimmed = value.strip()
    if not trimmed:
        raise ValueError("is empty")
    if len(trimmed) > MAX_VALUE_LENGTH:
        raise ValueError(f"is longer than {MAX_VALUE_LENGTH} characters")
    if _CONTROL.search(trimmed):
        raise ValueError("holds a control character (NUL, newline, ...)")
    normalize = _NORMALIZERS.get(kind)
    return normalize(trimmed) if normalize else trimmed


# Validation context of a record Touchline wrote itself after normalizing it (identity.inbound).
NORMALIZED = {"identities_normalized": True}


def _normalized_identities(identities: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    if info.context == NORMALIZED:
        return identities
    if len(identities) > MAX_IDENTITIES:
        raise ValueError(f"holds {len(identities)} identifiers; at most {MAX_IDENTITIES} are allowed")
    result = {}
    for kind, value in identities.items():
        if kind == CUSTOMER_ID:
            raise ValueError("names customer_id: send it in the touch's own customer_id field")
        if not _KIND.fullmatch(kind):
            raise ValueError(f"kind {kind[:40]!r} is not a lowercase word such as email or loyalty_card")
        try:
            result[kind] = normalized(kind, value)
        except ValueError as error:
            raise ValueError(f"{kind} {error}") from None
    return result


Identities = Annotated[
    dict[str, str],
    Field(
        description=(
            "Identifiers of the person besides customer_id, by kind: anonymous_id, email, phone (E.164), "
            "and kinds the operator configures (e.g. loyalty_card). Normalized on entry."
        ),
        examples=[{"anonymous_id": "3f0c-77aa", "email": "ada@example.com"}],
    ),
    AfterValidator(_normalized_identities),
]
