"""Segment's calls as Touchline touches: the mapping rules of services/ingest/tracking.py."""

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.ingest.domain import IngestPolicy
from services.ingest.tracking import MAX_MESSAGE_BYTES, parse_batch_call, parse_call, touch_from
from shared.errors import Rejected

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
POLICY = IngestPolicy(500, timedelta(minutes=5), frozenset({"anonymous_id", "email", "phone"}))


def test_a_track_call_maps_its_ids_name_and_time_and_keeps_the_rest() -> None:
    touch = touch_from(
        {
            "userId": 42,
            "anonymousId": "a-1",
            "event": "Order Completed",
            "properties": {"revenue": 9.5},
            "context": {"traits": {"email": " Ada@Example.com "}, "ip": "10.0.0.1"},
            "messageId": "m-1",
            "timestamp": "2026-11-22T11:00:00Z",
            "sentAt": "2026-11-22T11:00:30Z",
            "anything": {"kept": True},
        },
        "track",
        None,
        NOW,
    )
    assert (touch.event_id, touch.customer_id, touch.type, touch.channel) == (
        "m-1",
        "42",
        "purchase",
        "server",
    )
    assert touch.identities == {"anonymous_id": "a-1", "email": "ada@example.com"}
    # The client's clock ran 59.5 minutes behind ours: its timestamp moves by the same.
    assert touch.occurred_at == NOW - timedelta(seconds=30)
    assert touch.properties["amount"] == 9.5
    kept: Any = touch.properties["segment"]
    assert kept["anything"] == {"kept": True}
    assert kept["context"]["ip"] == "10.0.0.1"


@pytest.mark.parametrize(
    ("call", "message", "type_", "channel"),
    [
        ("track", {"event": "Signed Up"}, "signed_up", "server"),
        ("track", {"event": "  3D Model -- Rotated!"}, "event_3d_model_rotated", "server"),
        ("track", {"event": "Email Opened", "channel": "browser"}, "email.opened", "web"),
        ("page", {"name": "Home"}, "page.viewed", "web"),
        ("screen", {"name": "Cart"}, "screen.viewed", "app"),
        ("identify", {"traits": {"plan": "gold"}}, "identify", "server"),
        ("group", {"groupId": "g-1"}, "group", "server"),
        ("alias", {"previousId": "old-1"}, "alias", "server"),
    ],
)
def test_each_call_has_a_documented_type_and_channel(
    call: str, message: dict[str, object], type_: str, channel: str
) -> None:
    touch = touch_from({"userId": "u-1"} | message, call, None, NOW)  # type: ignore[arg-type]
    assert (touch.type, touch.channel) == (type_, channel)


def test_alias_links_the_previous_id_and_a_call_without_time_happened_on_arrival() -> None:
    touch = touch_from({"userId": "u-1", "previousId": "visitor-7"}, "alias", None, NOW)
    assert touch.identities == {"anonymous_id": "visitor-7"}
    assert touch.occurred_at == NOW


def test_a_message_id_that_is_no_identifier_becomes_a_stable_digest() -> None:
    first = touch_from({"userId": "u", "event": "x", "messageId": "ajs-next-id/ 7"}, "track", None, NOW)
    again = touch_from({"userId": "u", "event": "x", "messageId": "ajs-next-id/ 7"}, "track", None, NOW)
    assert first.event_id == again.event_id
    assert first.event_id.startswith("seg-")


def test_one_call_names_every_problem_with_a_4xx() -> None:
    with pytest.raises(Rejected) as refused:
        parse_call(orjson.dumps({"event": "Signed Up"}), "track", NOW, POLICY)
    assert "names nobody" in refused.value.problems[0].reason
    with pytest.raises(Rejected) as too_big:
        parse_call(orjson.dumps({"userId": "u", "event": "x" * MAX_MESSAGE_BYTES}), "track", NOW, POLICY)
    assert "32 KB" in too_big.value.problems[0].reason
    with pytest.raises(Rejected, match="not valid JSON"):
        parse_call(b"{nope", "track", NOW, POLICY)


def test_a_batch_keeps_its_valid_messages_and_names_the_refused_by_index() -> None:
    body = {
        "batch": [
            {"type": "track", "userId": "u-1", "event": "A"},
            {"type": "track", "event": "B"},
            {"userId": "u-1", "event": "C"},
            {"type": "identify", "userId": "u-1", "traits": {"email": "not an address"}},
            {"type": "page", "anonymousId": "a-1", "timestamp": "2026-11-22T13:00:00Z"},
        ],
        "sentAt": "2026-11-22T13:00:00Z",
    }
    touches, problems = parse_batch_call(orjson.dumps(body), NOW, POLICY)
    assert [t.type for t in touches] == ["a", "page.viewed"]
    assert touches[1].occurred_at == NOW  # sent the instant it happened, by a clock an hour ahead
    assert [(p.index, p.field) for p in problems] == [(1, "identities"), (2, "type"), (3, "identities")]
