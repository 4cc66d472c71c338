"""The console's rules without a browser or an API: sessions, search, the chart, rules in words, and
when a recorded consent change counts as applied."""

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.console.domain import (
    Sessions,
    activity,
    applied_change,
    csrf_ok,
    describe_rule,
    empties_timeline,
    new_session,
    search_kind,
    withheld_profile,
)

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)


def test_a_session_keeps_the_key_on_the_server_and_ends_when_it_expires() -> None:
    sessions = Sessions()
    session = new_session("secret-key", "front-office", ["timeline:read"], NOW, minutes=30)
    session_id = sessions.open(session)
    assert "secret-key" not in session_id
    assert sessions.get(session_id, NOW + timedelta(minutes=29)) == session
    assert sessions.get(session_id, NOW + timedelta(minutes=30)) is None
    assert sessions.get(session_id, NOW) is None  # an expired session is gone, not paused
    assert sessions.get(None, NOW) is None


def test_signing_out_ends_the_session() -> None:
    sessions = Sessions()
    session_id = sessions.open(new_session("k", "s", [], NOW, minutes=30))
    sessions.close(session_id)
    assert sessions.get(session_id, NOW) is None


def test_scopes_decide_what_a_session_may_see() -> None:
    session = new_session("k", "s", ["consent:read"], NOW, minutes=1)
    assert session.may("consent:read")
    assert not session.may("consent:write")


def test_a_form_passes_only_with_its_sessions_csrf_token() -> None:
    session = new_session("k", "s", [], NOW, minutes=1)
    other = new_session("k", "s", [], NOW, minutes=1)
    assert csrf_ok(session, session.csrf)
    assert not csrf_ok(session, other.csrf)
    assert not csrf_ok(session, None)
    assert not csrf_ok(session, "")


def test_the_search_kind_is_as_chosen_else_guessed_from_the_value() -> None:
    assert search_kind("loyalty_card", "4410") == "loyalty_card"
    assert search_kind(None, "ada@example.com") == "email"
    assert search_kind("", "+4915112345678") == "phone"
    assert search_kind("not-a-kind", "c-42") == "customer_id"


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=40), st.sampled_from(["web", "email", "store"])),
        max_size=60,
    )
)
def test_the_chart_counts_each_touch_of_its_window_once(touches: list[tuple[int, str]]) -> None:
    today = date(2026, 12, 3)
    events = [
        {"occurred_at": f"{today - timedelta(days=ago)}T10:00:00+00:00", "channel": channel}
        for ago, channel in touches
    ]
    bars = activity(events, 30, today)
    assert [bar.day for bar in bars] == [today - timedelta(days=29 - n) for n in range(30)]
    assert sum(bar.total for bar in bars) == sum(1 for ago, _ in touches if ago < 30)
    for bar in bars:
        expected = sum(1 for ago, _ in touches if today - timedelta(days=ago) == bar.day)
        assert bar.total == expected


def test_rules_read_as_marketers_write_them() -> None:
    rule = {
        "all": [
            {"count": {"type": "purchase", "channel": "store", "within": "30d"}, "gte": 2},
            {"not": {"last": {"type": "email.opened"}, "not_within": "90d"}},
            {"sum": {"type": "purchase", "property": "amount", "within": "1y"}, "gte": 100.5},
        ]
    }
    assert describe_rule(rule) == (
        "(purchase touches on store within 30d: at least 2)"
        " and (not (no email.opened touches within 90d))"
        " and (sum of amount over purchase touches within 1y: at least 100.5)"
    )
    assert describe_rule({"any": [{"last": {"properties": {"tier": "gold"}}, "within": "7d"}]}) == (
        "(last touches with tier = gold within 7d)"
    )


def test_a_change_counts_as_applied_once_its_audit_entry_is_there() -> None:
    history = [
        {"change_id": "erasure-1:profiling", "purpose": "profiling", "status": "denied"},
        {"change_id": "c-7", "purpose": "marketing", "status": "granted"},
    ]
    assert applied_change(history, "c-7") == history[1]
    assert applied_change(history, "erasure-1") == history[0]  # an erasure, by its changes' prefix
    assert applied_change(history, "c") is None
    assert applied_change([], "c-7") is None


def test_only_a_denial_the_timeline_needs_empties_it() -> None:
    assert empties_timeline({"purpose": "profiling", "status": "denied"})
    assert not empties_timeline({"purpose": "profiling", "status": "granted"})
    assert not empties_timeline({"purpose": "marketing", "status": "denied"})


def test_a_customer_whose_consent_forbids_profiling_gets_an_empty_card_that_says_why() -> None:
    denied = {"purposes": {"profiling": {"status": "denied"}, "marketing": {"status": "granted"}}}
    card = withheld_profile("c-1", denied)
    assert card is not None
    assert card["withheld"]
    assert card["event_count"] == 0
    assert card["consent"] == {"profiling": "denied", "marketing": "granted"}
    granted = {"purposes": {"profiling": {"status": "granted"}, "marketing": {"status": "denied"}}}
    assert withheld_profile("c-1", granted) is None  # then "not found" is the truth
    assert withheld_profile("c-1", None) is None
