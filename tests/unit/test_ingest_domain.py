"""Ingest's rules, shared by the HTTP and the Kafka-native path."""

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.ingest.domain import (
    DEFAULT_INBOUND_SOURCE,
    IngestPolicy,
    dead_letter_headers,
    inbound_source,
    parse_batch,
    parse_record,
    routed_records,
)
from shared.errors import Problem, Refusal, Rejected
from shared.events import IdentifiedTouch, TouchEvent, TouchEventIn
from shared.serialization import decode_customer_log

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
POLICY = IngestPolicy(
    max_batch=3, max_future=timedelta(minutes=5), identity_kinds=frozenset({"email", "anonymous_id"})
)


def touch(**changes: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "customer_id": "c-1",
        "type": "purchase",
        "channel": "web",
        "occurred_at": "2026-11-22T11:00:00Z",
        "properties": {"amount": 12.5},
    } | changes


def rejected_by(body: bytes) -> Rejected:
    with pytest.raises(Rejected) as raised:
        parse_batch(body, NOW, POLICY)
    return raised.value


def test_a_valid_batch_keeps_its_order() -> None:
    events = parse_batch(orjson.dumps([touch(event_id="a"), touch(event_id="b")]), NOW, POLICY)
    assert [event.event_id for event in events] == ["a", "b"]


def test_every_invalid_event_is_named_by_index_and_field() -> None:
    rejection = rejected_by(orjson.dumps([touch(), touch(customer_id="no spaces"), touch()]))
    assert (rejection.refusal, rejection.error) == (Refusal.INVALID, "invalid_events")
    assert [(problem.index, problem.field) for problem in rejection.problems] == [(1, "customer_id")]


def test_several_invalid_events_are_all_reported() -> None:
    rejection = rejected_by(orjson.dumps([touch(type="Bad"), touch(), touch(occurred_at="2026-01-01T00:00")]))
    assert [(problem.index, problem.field) for problem in rejection.problems] == [
        (0, "type"),
        (2, "occurred_at"),
    ]


def test_events_too_far_in_the_future_are_rejected_but_old_ones_are_welcome() -> None:
    soon = (NOW + timedelta(minutes=4)).isoformat()
    too_late = (NOW + timedelta(minutes=6)).isoformat()
    assert (
        len(
            parse_batch(
                orjson.dumps([touch(occurred_at=soon), touch(occurred_at="1999-01-01T00:00:00Z")]),
                NOW,
                POLICY,
            )
        )
        == 2
    )
    rejection = rejected_by(orjson.dumps([touch(occurred_at=too_late)]))
    assert rejection.problems == [
        Problem(index=0, field="occurred_at", reason="is more than 300 s in the future")
    ]


@pytest.mark.parametrize(
    ("body", "refusal", "error"),
    [
        (b"not json", Refusal.MALFORMED, "malformed_json"),
        (b"", Refusal.MALFORMED, "malformed_json"),
        (b'{"event_id": "x"}', Refusal.INVALID, "invalid_batch"),
        (b"[]", Refusal.INVALID, "empty_batch"),
        (orjson.dumps([touch()] * 4), Refusal.TOO_LARGE, "batch_too_large"),
    ],
)
def test_malformed_bodies_get_their_own_kind_of_refusal(body: bytes, refusal: Refusal, error: str) -> None:
    rejection = rejected_by(body)
    assert (rejection.refusal, rejection.error) == (refusal, error)


def test_a_kafka_record_gets_the_same_rules_as_one_http_event() -> None:
    assert parse_record(orjson.dumps(touch()), NOW, POLICY).event_id == "e-1"
    for bad in (b"{", None, orjson.dumps([touch()]), orjson.dumps(touch(channel="Web"))):
        with pytest.raises(Rejected):
            parse_record(bad, NOW, POLICY)


def test_inbound_source_comes_from_the_header_or_a_default() -> None:
    assert inbound_source([]) == DEFAULT_INBOUND_SOURCE
    assert inbound_source([("trace", b"x"), ("source", b"store-pos")]) == "store-pos"
    with pytest.raises(Rejected) as raised:
        inbound_source([("source", b"not ok")])
    assert raised.value.problems[0].field == "headers.source"


def test_dead_letter_headers_carry_reason_stage_time_and_origin() -> None:
    rejection = Rejected(Refusal.INVALID, "invalid_event", "bad", [Problem(field="type", reason="nope")])
    headers = dict(dead_letter_headers(rejection, NOW, "ingest-worker", "touch.inbound/3/42"))
    assert orjson.loads(headers["error"]) == {
        "error": "invalid_event",
        "message": "bad",
        "problems": [{"field": "type", "reason": "nope"}],
    }
    assert headers["failed_at"] == b"2026-11-22T12:00:00+00:00"
    assert headers["origin"] == b"touch.inbound/3/42"
    assert headers["stage"] == b"ingest-worker"


def test_stamped_records_are_keyed_by_customer_and_add_only_the_platform_fields() -> None:
    events = parse_batch(orjson.dumps([touch(), touch(event_id="e-2", customer_id="c-2")]), NOW, POLICY)
    routed = routed_records(events, NOW, "shop")
    records = routed.customer_log
    assert not routed.identity_inbound
    assert [key for key, _ in records] == [b"c-1", b"c-2"]
    for event, (_, value) in zip(events, records, strict=True):
        stamped = decode_customer_log(value)
        assert isinstance(stamped, TouchEvent)
        assert stamped.model_dump(include=set(TouchEventIn.model_fields)) == event.model_dump()
        assert (stamped.received_at, stamped.source, stamped.kind) == (NOW, "shop", "touch")


def test_a_touch_naming_only_a_customer_is_the_version_1_record_it_always_was() -> None:
    [event] = parse_batch(orjson.dumps([touch(properties={})]), NOW, POLICY)
    [(_, value)] = routed_records([event], NOW, "shop").customer_log
    assert orjson.loads(value) == {
        "event_id": "e-1",
        "customer_id": "c-1",
        "type": "purchase",
        "channel": "web",
        "occurred_at": "2026-11-22T11:00:00Z",
        "properties": {},
        "schema_version": 1,
        "kind": "touch",
        "received_at": "2026-11-22T12:00:00Z",
        "source": "shop",
    }
    assert decode_customer_log(value).schema_version == 2


def test_touches_naming_identities_go_to_resolution_with_them_normalized() -> None:
    batch = [
        touch(identities={"email": " Ada@Example.COM "}),
        touch(event_id="e-2", customer_id=None, identities={"anonymous_id": "a-1"}),
        touch(event_id="e-3"),
    ]
    routed = routed_records(parse_batch(orjson.dumps(batch), NOW, POLICY), NOW, "shop")
    assert [key for key, _ in routed.customer_log] == [b"c-1"]
    first, second = (IdentifiedTouch.model_validate_json(value) for _, value in routed.identity_inbound)
    assert (first.customer_id, first.identities) == ("c-1", {"email": "ada@example.com"})
    assert (second.customer_id, second.identities, second.source) == (None, {"anonymous_id": "a-1"}, "shop")


def test_an_identifier_kind_the_deployment_does_not_resolve_is_refused_by_name() -> None:
    with pytest.raises(Rejected) as refused:
        parse_batch(orjson.dumps([touch(identities={"loyalty_card": "L-1"})]), NOW, POLICY)
    [problem] = refused.value.problems
    assert (problem.index, problem.field) == (0, "identities.loyalty_card")
    assert "anonymous_id, email" in problem.reason
