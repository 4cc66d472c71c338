"""The bare pipeline's hops read the wire contract as the stages do: were a field renamed, the benchmark's
ceiling would stop measuring the same records."""

from datetime import UTC, datetime

from services.consent.domain import consent_change
from services.timeline.domain import TimelineRow
from shared.events import ConsentStatus, PlatformStamp, Purpose, TouchEventIn
from shared.serialization import encode, encode_stamped
from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_ALLOWED
from tests.bench.bare import TIMELINE_SHARES, partitions_of, timeline_row

AT = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)


def test_a_touch_as_ingest_writes_it_becomes_its_events_row() -> None:
    touch = TouchEventIn(
        event_id="e-1",
        customer_id="cust-1",
        type="purchase",
        channel="store",
        occurred_at=AT,
        properties={"amount": 12.5},
    )
    value = encode_stamped(touch, encode(PlatformStamp(received_at=AT, source="pos")))
    assert timeline_row(value) == TimelineRow(
        "cust-1", AT, "e-1", "purchase", "store", '{"amount":12.5}', AT, "pos"
    )


def test_the_timeline_hops_share_every_partition_once() -> None:
    settings = TouchlineSettings(topic_prefix="t.")
    shares = [partitions_of(settings, CUSTOMER_ALLOWED, share, TIMELINE_SHARES) for share in range(2)]
    assert sorted(p.partition for share in shares for p in share) == list(range(CUSTOMER_ALLOWED.partitions))


def test_a_consent_change_on_the_log_becomes_no_row() -> None:
    change = consent_change("cust-1", Purpose.MARKETING, ConsentStatus.DENIED, AT, "preference-centre")
    assert timeline_row(encode(change)) is None
