"""What the resolver publishes: built without validating again, so checked here against validation."""

from datetime import UTC, datetime

import orjson

from services.identity.domain import Change
from services.identity.processor import outputs_of
from services.identity.store import Decided
from shared.events import IdentifiedTouch, IdentityChange, IdentityChangeKind, TouchEvent
from shared.serialization import decode_customer_log

AT = datetime(2026, 11, 22, 12, tzinfo=UTC)
TOPICS = {"log": "customer.log", "changes": "identity.changes", "dlq": "touch.dlq"}


def test_a_resolved_touch_is_the_valid_version_2_record_of_its_profile() -> None:
    touch = IdentifiedTouch(
        event_id="e-1",
        identities={"email": "ada@example.com"},
        type="email.opened",
        channel="email",
        occurred_at=AT,
        properties={"campaign": "winter"},
        received_at=AT,
        source="esp",
    )
    linked = Change(IdentityChangeKind.LINKED, "c-1", ("email", "ada@example.com"))
    outputs = outputs_of([Decided(7, "e-1", "c-1", [linked], AT)], {7: touch}, TOPICS)
    [(key, value)] = outputs["customer.log"]
    logged = decode_customer_log(value)
    expected = touch.model_dump(exclude={"schema_version", "kind", "customer_id"})
    assert key == b"c-1"
    assert logged == TouchEvent(**expected, customer_id="c-1")
    [(change_key, change)] = outputs["identity.changes"]
    published = IdentityChange.model_validate(orjson.loads(change))
    assert (change_key, published.change_id, published.caused_by) == (b"c-1", "e-1:0", "e-1")
