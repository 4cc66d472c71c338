"""Which consent purposes each projection needs: the one place to add a purpose or a projection."""

from collections.abc import Mapping
from collections.abc import Set as AbstractSet

from shared.events import ConsentStatus, Purpose

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
