"""POST /v1/events against the real broker: what is accepted arrives, what is refused publishes nothing."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from services.ingest.api import create_app
from services.ingest.settings import IngestSettings
from shared.kafka import DurablePublisher
from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_LOG
from tests.helpers import consume_until

WRITER = {"Authorization": "Bearer test-writer"}


@pytest.fixture
async def client(kafka: TouchlineSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(IngestSettings())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://ingest") as client,
    ):
        yield client


def touch(event_id: str, customer_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "customer_id": customer_id,
        "type": "page.viewed",
        "channel": "web",
        "occurred_at": "2026-11-20T10:00:00Z",
        "properties": {"path": "/"},
    } | changes


async def log_records_of(
    settings: TouchlineSettings, customers: set[str], count: int
) -> list[dict[str, Any]]:
    records = await consume_until(
        settings.kafka_bootstrap,
        settings.topic(CUSTOMER_LOG),
        lambda kept: len(kept) >= count,
        keep=lambda record: record.key.decode() in customers,
    )
    return [orjson.loads(record.value) | {"_key": record.key.decode()} for record in records]


async def test_a_batch_arrives_in_order_per_customer_and_stamped(
    client: httpx.AsyncClient, kafka: TouchlineSettings, unique: str
) -> None:
    alice, bob = f"alice-{unique}", f"bob-{unique}"
    batch = [touch(f"{unique}-{n}", alice if n % 3 else bob) for n in range(30)]
    before = datetime.now(UTC)
    response = await client.post("/v1/events", json=batch, headers=WRITER)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 30}

    records = await log_records_of(kafka, {alice, bob}, 30)
    for customer in (alice, bob):
        sent = [event["event_id"] for event in batch if event["customer_id"] == customer]
        assert [record["event_id"] for record in records if record["_key"] == customer] == sent
    assert {record["source"] for record in records} == {"test-shop"}
    received = {datetime.fromisoformat(record["received_at"]) for record in records}
    assert all(before <= moment <= datetime.now(UTC) for moment in received)


INVALID_BATCHES = [
    ("bad field", [touch("x", "{c}", type="Not-Dotted")], "application/json", 422),
    ("naive timestamp", [touch("x", "{c}", occurred_at="2026-11-20T10:00:00")], "application/json", 422),
    ("future timestamp", [touch("x", "{c}", occurred_at="{future}")], "application/json", 422),
    ("oversized properties", [touch("x", "{c}", properties={"b": "x" * 33_000})], "application/json", 422),
    ("one bad among good", [touch("x", "{c}"), touch("y", "{c}", channel="")], "application/json", 422),
    ("empty batch", [], "application/json", 422),
    ("oversized batch", [touch(f"x{n}", "{c}") for n in range(501)], "application/json", 413),
    ("wrong content type", [touch("x", "{c}")], "text/csv", 415),
]


async def test_refused_input_publishes_nothing_and_valid_input_beside_it_is_not_lost(
    client: httpx.AsyncClient, kafka: TouchlineSettings, unique: str
) -> None:
    customer = f"carol-{unique}"
    future = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    for name, batch, content_type, status in INVALID_BATCHES:
        body = orjson.dumps(batch).decode().replace("{c}", customer).replace("{future}", future)
        response = await client.post(
            "/v1/events", content=body, headers=WRITER | {"Content-Type": content_type}
        )
        assert response.status_code == status, (name, response.text)
        assert response.json()["message"], name
    non_json = await client.post(
        "/v1/events", content=b"{{", headers=WRITER | {"Content-Type": "application/json"}
    )
    assert non_json.status_code == 400

    sentinel = await client.post("/v1/events", json=[touch(f"sentinel-{unique}", customer)], headers=WRITER)
    assert sentinel.status_code == 202
    records = await log_records_of(kafka, {customer}, 1)
    assert [record["event_id"] for record in records] == [f"sentinel-{unique}"]


async def test_an_unreachable_broker_answers_503_with_retry_after(kafka: TouchlineSettings) -> None:
    settings = IngestSettings(kafka_bootstrap="127.0.0.1:1", ingest_produce_timeout_seconds=1.0)
    app = create_app(settings, DurablePublisher(settings, timeout_seconds=1.0))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://ingest") as client,
    ):
        response = await client.post("/v1/events", json=[touch("x", "y")], headers=WRITER)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert "retry" in response.json()["message"]
        assert (await client.get("/readyz")).status_code == 503
