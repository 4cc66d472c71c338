"""Demo journeys look like real customers and are valid input for ingest."""

import argparse
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from shared.__main__ import DEMO_SCOPES, SKIPPED, demo, key_for
from shared.demo import customer_journey, demo_email, journeys
from shared.settings import TouchlineSettings

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


def test_journeys_are_deterministic_for_a_seed() -> None:
    assert list(journeys(5, NOW, seed=7)) == list(journeys(5, NOW, seed=7))
    assert list(journeys(5, NOW, seed=7)) != list(journeys(5, NOW, seed=8))


def test_each_demo_customer_can_be_found_by_email_from_their_first_touch() -> None:
    events = list(journeys(20, NOW))
    firsts = {str(event.customer_id): event for event in reversed(events)}
    assert {c: e.identities for c, e in firsts.items()} == {c: {"email": demo_email(c)} for c in firsts}
    assert sum(1 for event in events if event.identities) == len(firsts)


def test_journeys_span_channels_and_kinds_of_touch() -> None:
    events = list(journeys(50, NOW))
    assert {event.channel for event in events} >= {"web", "email", "store", "call_center", "mobile"}
    types = Counter(event.type for event in events)
    assert {"page.viewed", "email.sent", "email.opened", "email.clicked", "purchase", "support.call"} <= set(
        types
    )
    purchases = [event for event in events if event.type == "purchase"]
    for purchase in purchases:
        amount = purchase.properties["amount"]
        assert isinstance(amount, float)
        assert amount > 0
        assert purchase.properties["currency"] == "EUR"


def test_each_journey_is_in_time_order_within_its_weeks_and_never_in_the_future() -> None:
    for number in range(1, 30):
        events = customer_journey(f"cust-{number:05d}", NOW, weeks=6)
        moments = [event.occurred_at for event in events]
        assert moments == sorted(moments)
        assert all(NOW - timedelta(weeks=6) <= moment < NOW for moment in moments)


def test_event_ids_are_unique() -> None:
    events = list(journeys(40, NOW))
    assert len({event.event_id for event in events}) == len(events)


@pytest.fixture
def no_keys_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic-settings merges a dict field from the environment into the one given: keep the session's
    test keys (tests/conftest.py) out of these."""
    monkeypatch.delenv("TOUCHLINE_API_KEYS", raising=False)


@pytest.mark.usefixtures("no_keys_in_environment")
def test_the_demo_finds_a_key_for_each_scope_among_any_keys() -> None:
    settings = TouchlineSettings(
        api_keys={
            "web": ["events:write"],
            "dpo": {"source": "dpo", "scopes": ["consent:write"]},
            "mkt": ["segments:admin"],
        }
    )
    assert [key_for(settings, scope) for scope in DEMO_SCOPES] == ["mkt", "dpo", "web"]
    assert key_for(settings, "timeline:read") is None


@pytest.mark.usefixtures("no_keys_in_environment")
def test_the_demo_is_skipped_with_its_reason_when_a_scope_has_no_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = TouchlineSettings(api_keys={"web": ["events:write"]})
    with pytest.raises(SystemExit) as exit_:
        demo(argparse.Namespace(), settings)
    assert exit_.value.code == SKIPPED
    assert "no key in TOUCHLINE_API_KEYS holds segments:admin, consent:write" in capsys.readouterr().out
