"""What the resolver publishes: built without validating again, so checked here against validation."""

from datetime import UTC, datetime

import orjson

from services.identity.domain import Change
from services.identity.processor import outputs_of
from services.identity.store import Decided
from shared.events import (
    IdentifiedTouch,
    IdentityChange,
    IdentityChangeKind,
    ProfileAbsorbed,
    ProfileMerged,
    TouchEvent,
)
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


def test_a_merge_is_logged_on_both_sides_each_in_its_own_profiles_order() -> None:
    touch = IdentifiedTouch(
        event_id="e-2",
        customer_id="c-1",
        identities={"anonymous_id": "visitor-9"},
        type="login",
        channel="web",
        occurred_at=AT,
        received_at=AT,
        source="shop",
    )
    merged = Change(IdentityChangeKind.MERGED, "c-1", ("anonymous_id", "visitor-9"), other="profile:x")
    outputs = outputs_of([Decided(8, "e-2", "c-1", [merged], AT)], {8: touch}, TOPICS)
    logged = [(key, decode_customer_log(value)) for key, value in outputs["customer.log"]]
    assert [(key, record.kind) for key, record in logged] == [
        (b"c-1", "touch"),
        (b"profile:x", "merged"),
        (b"c-1", "absorbed"),
    ]
    (_, sealing), (_, absorbing) = logged[1], logged[2]
    assert isinstance(sealing, ProfileMerged)
    assert isinstance(absorbing, ProfileAbsorbed)
    assert (sealing.survivor, absorbing.absorbed) == ("c-1", "profile:x")
    assert sealing.change_id == absorbing.change_id == "e-2:0"
