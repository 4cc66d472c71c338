"""The console's rules, as plain functions: sessions and what a key's scopes show, search, the activity
chart and segment rules in words. The pages (api.py) and the API client (store.py) are thin around them."""

import secrets
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.purposes import must_erase

SEARCH_KINDS = ("customer_id", "email", "phone", "loyalty_card", "anonymous_id")


@dataclass(frozen=True)
class Session:
    """A signed-in user. The API key stays here, on the server: the browser holds only the session id."""

    key: str
    source: str
    scopes: frozenset[str]
    csrf: str
    expires: datetime

    def may(self, scope: str) -> bool:
        return scope in self.scopes


def new_session(key: str, source: str, scopes: Iterable[str], now: datetime, minutes: int) -> Session:
    return Session(
        key, source, frozenset(scopes), secrets.token_urlsafe(24), now + timedelta(minutes=minutes)
    )


class Sessions:
    """Sessions by id, in the console's memory: signing in again after a restart is the price of never
    writing a key anywhere."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}

    def open(self, session: Session) -> str:
        session_id = secrets.token_urlsafe(32)
        self._by_id[session_id] = session
        return session_id

    def get(self, session_id: str | None, now: datetime) -> Session | None:
        session = self._by_id.get(session_id or "")
        if session is None or session.expires <= now:
            self._by_id.pop(session_id or "", None)
            return None
        return session

    def close(self, session_id: str | None) -> None:
        self._by_id.pop(session_id or "", None)


def csrf_ok(session: Session, presented: str | None) -> bool:
    return presented is not None and secrets.compare_digest(session.csrf, presented)


def applied_change(changes: Iterable[Mapping[str, Any]], change_id: str) -> Mapping[str, Any] | None:
    """The audit entry of a change the console recorded, once the consent filter has applied it; None
    before. An erasure's changes carry its id as their prefix (`erasure-…:purpose`)."""
    return next(
        (
            change
            for change in changes
            if change["change_id"] == change_id or str(change["change_id"]).startswith(f"{change_id}:")
        ),
        None,
    )


def empties_timeline(change: Mapping[str, Any]) -> bool:
    """Whether an applied change makes the timeline delete the customer: a denial of a purpose it needs."""
    return change["status"] == "denied" and must_erase("timeline", {str(change["purpose"])})


def withheld_profile(customer_id: str, consent: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The card of a customer the timeline holds nothing of because their consent forbids it, so the page
    says why it is empty rather than "not found"; None when consent does not explain the absence."""
    purposes = (consent or {}).get("purposes", {})
    if not any(
        view["status"] == "denied" and must_erase("timeline", {name}) for name, view in purposes.items()
    ):
        return None
    return {
        "customer_id": customer_id,
        "first_seen": None,
        "last_seen": None,
        "event_count": 0,
        "purchase_count": 0,
        "purchase_amount": 0,
        "events_by_channel": {},
        "events_by_type": {},
        "traits": {},
        "consent": {name: view["status"] for name, view in purposes.items()},
        "segments": None,
        "withheld": True,
    }


def search_kind(kind: str | None, query: str) -> str:
    """The kind to look a query up by: as chosen, else guessed from its shape."""
    if kind in SEARCH_KINDS:
        return kind
    if "@" in query:
        return "email"
    if query.startswith("+"):
        return "phone"
    return "customer_id"


@dataclass(frozen=True)
class Bar:
    """One day of the activity chart: touches per channel, stacked."""

    day: date
    by_channel: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(count for _, count in self.by_channel)


def activity(events: Iterable[Mapping[str, Any]], days: int, today: date) -> list[Bar]:
    """Touches per day and channel over the last `days` days, oldest first (days with none included)."""
    counts: Counter[tuple[date, str]] = Counter()
    for event in events:
        occurred = datetime.fromisoformat(str(event["occurred_at"])).astimezone(UTC).date()
        counts[(occurred, str(event["channel"]))] += 1
    channels = sorted({channel for _, channel in counts})
    first = today - timedelta(days=days - 1)
    return [
        Bar(day, tuple((c, counts[(day, c)]) for c in channels if counts[(day, c)]))
        for day in (first + timedelta(days=n) for n in range(days))
    ]


def describe_rule(rule: Mapping[str, Any]) -> str:
    """A segment rule in words, as marketers write them."""
    if "all" in rule:
        return " and ".join(f"({describe_rule(child)})" for child in rule["all"])
    if "any" in rule:
        return " or ".join(f"({describe_rule(child)})" for child in rule["any"])
    if "not" in rule:
        return f"not ({describe_rule(rule['not'])})"
    for measure in ("count", "sum", "min", "max"):
        if measure in rule:
            body = rule[measure]
            what = _touches(body)
            subject = what if measure == "count" else f"{measure} of {body['property']} over {what}"
            bounds = ", ".join(f"{_OPERATORS[op]} {_number(rule[op])}" for op in _OPERATORS if op in rule)
            return f"{subject} within {body['within']}: {bounds}"
    if "last" in rule:
        what = _touches(rule["last"])
        if rule.get("within"):
            return f"last {what} within {rule['within']}"
        return f"no {what} within {rule.get('not_within')}"
    return str(dict(rule))


_OPERATORS = {"gte": "at least", "lte": "at most", "eq": "exactly"}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _touches(event_filter: Mapping[str, Any]) -> str:
    parts = [f"{event_filter['type']} touches" if event_filter.get("type") else "touches"]
    if event_filter.get("channel"):
        parts.append(f"on {event_filter['channel']}")
    for name, value in (event_filter.get("properties") or {}).items():
        parts.append(f"with {name} = {value}")
    return " ".join(parts)
