"""Which consent purposes each projection needs: the one place to add a purpose or a projection."""

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime

from shared.events import ConsentChange, ConsentStatus, Purpose

PROJECTION_PURPOSES: Mapping[str, frozenset[Purpose]] = {
    "timeline": frozenset({Purpose.PROFILING}),
    "profile": frozenset({Purpose.PROFILING}),
    "segments": frozenset({Purpose.PROFILING, Purpose.MARKETING}),
}

# For customers who never said anything. Profiling is needed to serve them at all (legitimate interest);
# marketing is opt-in, as GDPR-style rules expect. TOUCHLINE_CONSENT_DEFAULTS overrides these.
DEFAULT_CONSENT: Mapping[Purpose, ConsentStatus] = {
    Purpose.PROFILING: ConsentStatus.GRANTED,
    Purpose.MARKETING: ConsentStatus.DENIED,
}


def may_project(projection: str, allowed: AbstractSet[str]) -> bool:
    """A projection may use a touch only when consent allows every purpose the projection needs."""
    return all(purpose in allowed for purpose in PROJECTION_PURPOSES[projection])


def must_erase(projection: str, revoked: AbstractSet[str]) -> bool:
    """A projection deletes a customer when any purpose it needs was withdrawn."""
    return any(purpose in revoked for purpose in PROJECTION_PURPOSES[projection])


def erasure_of(customer_id: str, erasure_id: str, at: datetime, source: str) -> list[ConsentChange]:
    """The right to be forgotten as the customer log carries it: every purpose denied, each change
    marked as an erasure, their ids derived from the erasure's."""
    return [
        ConsentChange(
            change_id=f"{erasure_id}:{purpose.value}",
            customer_id=customer_id,
            purpose=purpose,
            status=ConsentStatus.DENIED,
            changed_at=at,
            source=source,
            erasure=True,
        )
        for purpose in Purpose
    ]
