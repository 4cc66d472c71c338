"""touch.inbound through the real worker process: bad records go to the DLQ, good ones around them pass."""

from datetime import UTC, datetime, timedelta

import orjson

from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_LOG, TOUCH_DLQ, TOUCH_INBOUND
from tests.helpers import ServiceProcess, consume_until, produce


def touch(event_id: str, customer_id: str, **changes: object) -> bytes:
    event = {
        "event_id": event_id,
        "customer_id": customer_id,
        "type": "purchase",
        "channel": "store",
        "occurred_at": "2026-11-21T15:00:00Z",
        "properties": {"amount": 10},
    }
    return orjson.dumps(event | changes)


async def test_poison_records_are_dead_lettered_and_never_stop_the_worker(
    ingest_worker: ServiceProcess, kafka: TouchlineSettings, unique: str
) -> None:
    customer = f"dora-{unique}"
    key = customer.encode()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    records: list[tuple[bytes | None, bytes | None]] = [
        (key, touch(f"{unique}-1", customer)),
        (key, b"\x00\xffnot json at all"),
        (key, touch(f"{unique}-2", customer)),
        (key, touch(f"{unique}-bad-type", customer, type="Purchase")),
        (key, None),
        (key, touch(f"{unique}-future", customer, occurred_at=future)),
        (key, touch(f"{unique}-3", customer)),
    ]
    await produce(kafka.kafka_bootstrap, kafka.topic(TOUCH_INBOUND), records)
    await produce(
        kafka.kafka_bootstrap,
        kafka.topic(TOUCH_INBOUND),
        [(key, touch(f"{unique}-4", customer))],
        headers=[("source", b"pos-berlin")],
    )
    await produce(
        kafka.kafka_bootstrap,
        kafka.topic(TOUCH_INBOUND),
        [(key, touch(f"{unique}-5", customer))],
        headers=[("source", b"bad source")],
    )

    forwarded = await consume_until(
        kafka.kafka_bootstrap,
        kafka.topic(CUSTOMER_LOG),
        lambda kept: len(kept) >= 4,
        keep=lambda record: record.key == key,
        timeout=90,
    )
    events = [orjson.loads(record.value) for record in forwarded]
    assert [event["event_id"] for event in events] == [f"{unique}-{n}" for n in (1, 2, 3, 4)]
    assert [event["source"] for event in events] == ["kafka-inbound"] * 3 + ["pos-berlin"]

    dead = await consume_until(
        kafka.kafka_bootstrap,
        kafka.topic(TOUCH_DLQ),
        lambda kept: len(kept) >= 5,
        keep=lambda record: record.key == key,
        timeout=30,
    )
    assert [record.value for record in dead] == [
        records[1][1],
        records[3][1],
        None,
        records[5][1],
        touch(f"{unique}-5", customer),
    ]
    reasons = [orjson.loads(dict(record.headers)["error"]) for record in dead]
    assert [reason["error"] for reason in reasons] == [
        "malformed_json",
        "invalid_event",
        "malformed_json",
        "invalid_event",
        "invalid_event",
    ]
    assert [problem["field"] for problem in reasons[1]["problems"]] == ["type"]
    assert [problem["field"] for problem in reasons[3]["problems"]] == ["occurred_at"]
    assert [problem["field"] for problem in reasons[4]["problems"]] == ["headers.source"]
    for record in dead:
        headers = dict(record.headers)
        assert datetime.fromisoformat(headers["failed_at"].decode()) <= datetime.now(UTC)
        assert headers["origin"].decode().startswith(kafka.topic(TOUCH_INBOUND) + "/")
