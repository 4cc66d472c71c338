"""The ingest HTTP contract, against a fake publisher: status codes, messages, auth, never a 5xx."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.api import create_app
from services.ingest.settings import IngestSettings
from tests.fakes import FakePublisher

KEYS = {"writer": {"source": "web-shop", "scopes": ["events:write"]}, "reader": ["timeline:read"]}
WRITER = {"Authorization": "Bearer writer", "Content-Type": "application/json"}


def touch(**changes: Any) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "customer_id": "c-1",
        "type": "purchase",
        "channel": "web",
        "occurred_at": "2026-11-22T11:00:00Z",
    } | changes


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
async def client(publisher: FakePublisher) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(IngestSettings(api_keys=KEYS, topic_prefix="unit."), publisher)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://ingest") as client,
    ):
        yield client


async def test_accepted_events_are_stamped_with_the_keys_source(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post(
        "/v1/events", json=[touch(), touch(event_id="e-2", customer_id="c-2")], headers=WRITER
    )
    assert response.status_code == 202
    assert response.json() == {"accepted": 2}
    assert [(topic, key) for topic, key, _ in publisher.published] == [
        ("unit.customer.log", b"c-1"),
        ("unit.customer.log", b"c-2"),
    ]
    record = orjson.loads(publisher.published[0][2])
    assert record["source"] == "web-shop"
    assert record["received_at"].endswith("Z")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer nope"}, 401),
        ({"Authorization": "Basic bm9wZQ=="}, 401),  # "nope"
        ({"Authorization": "Bearer reader"}, 403),
    ],
)
async def test_a_key_with_the_write_scope_is_required(
    client: httpx.AsyncClient, publisher: FakePublisher, headers: dict[str, str], status: int
) -> None:
    response = await client.post("/v1/events", json=[touch()], headers=headers)
    assert response.status_code == status
    assert response.json()["message"]
    assert not publisher.published


async def test_invalid_events_are_listed_and_nothing_is_published(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post(
        "/v1/events", json=[touch(), touch(occurred_at="2026-11-22T11:00:00")], headers=WRITER
    )
    assert response.status_code == 422
    assert response.json()["problems"] == [
        {"index": 1, "field": "occurred_at", "reason": "Input should have timezone info"}
    ]
    assert not publisher.published


async def test_one_answer_names_every_problem_of_every_event(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    """A client fixing its batch must not need a second 422 to learn of a second problem."""
    batch = [
        touch(),
        touch(occurred_at="2026-11-22T11:00:00"),
        touch(occurred_at="2999-01-01T00:00:00Z"),
        {key: value for key, value in touch().items() if key != "customer_id"},
    ]
    response = await client.post("/v1/events", json=batch, headers=WRITER)
    assert response.status_code == 422
    assert [(p["index"], p["field"]) for p in response.json()["problems"]] == [
        (1, "occurred_at"),
        (2, "occurred_at"),
        (3, "identities"),
    ]
    assert "in the future" in response.json()["problems"][1]["reason"]
    assert "send customer_id, identities, or both" in response.json()["problems"][2]["reason"]
    assert not publisher.published


@pytest.mark.parametrize(
    ("event", "field", "reason"),
    [
        (touch(properties={"note": "a\0b"}), "properties", "properties.note holds a NUL character"),
        (touch(properties={"x": {"k\0": 1}}), "properties", "a key in properties.x holds a NUL"),
        (touch(occurred_at="0001-01-01T00:00:00+01:00"), "occurred_at", "between 1970-01-01 and 3000-01-01"),
        (touch(occurred_at="9999-12-31T23:59:59-01:00"), "occurred_at", "between 1970-01-01 and 3000-01-01"),
    ],
)
async def test_what_no_store_can_hold_is_refused_naming_the_field(
    client: httpx.AsyncClient, publisher: FakePublisher, event: dict[str, Any], field: str, reason: str
) -> None:
    response = await client.post("/v1/events", json=[touch(), event], headers=WRITER)
    assert response.status_code == 422, response.text
    [problem] = response.json()["problems"]
    assert (problem["index"], problem["field"]) == (1, field)
    assert reason in problem["reason"]
    assert not publisher.published


async def test_non_finite_numbers_are_refused(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    body = json.dumps([touch(properties={"amount": float("nan")}), touch(properties={"n": [1e400]})])
    response = await client.post("/v1/events", content=body, headers=WRITER)
    assert response.status_code == 422, response.text
    assert [(p["index"], p["field"]) for p in response.json()["problems"]] == [
        (0, "properties"),
        (1, "properties"),
    ]
    assert not publisher.published


@pytest.mark.parametrize(
    ("content", "content_type", "status", "error"),
    [
        (b"[{", "application/json", 400, "malformed_json"),
        (orjson.dumps([touch()]), "text/plain", 415, "unsupported_media_type"),
        (orjson.dumps([touch()]), "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (orjson.dumps([]), "application/json", 422, "empty_batch"),
        (
            orjson.dumps([touch(event_id=f"e-{n}") for n in range(501)]),
            "application/json",
            413,
            "batch_too_large",
        ),
        (
            orjson.dumps([touch(properties={"blob": "x" * 20_000})] * 60),
            "application/json",
            413,
            "body_too_large",
        ),
    ],
)
async def test_bad_bodies_get_a_clear_status_and_publish_nothing(
    client: httpx.AsyncClient,
    publisher: FakePublisher,
    content: bytes,
    content_type: str,
    status: int,
    error: str,
) -> None:
    headers = WRITER | {"Content-Type": content_type}
    response = await client.post("/v1/events", content=content, headers=headers)
    assert (response.status_code, response.json()["error"]) == (status, error)
    assert not publisher.published


async def test_a_chunked_body_is_capped_too(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 100_000

    response = await client.post("/v1/events", content=chunks(), headers=WRITER)
    assert response.status_code == 413


async def test_an_unavailable_broker_means_503_with_retry_after(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    publisher.unavailable = True
    response = await client.post("/v1/events", json=[touch()], headers=WRITER)
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert (await client.get("/readyz")).status_code == 503


async def test_operations_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    await client.post("/v1/events", json=[touch()], headers=WRITER)
    metrics = (await client.get("/metrics")).text
    assert 'touchline_ingest_events_accepted_total{path="http",source="web-shop"}' in metrics
    assert "touchline_ingest_request_seconds_bucket" in metrics


async def test_the_openapi_document_shows_a_copyable_example(client: httpx.AsyncClient) -> None:
    operation = (await client.get("/openapi.json")).json()["paths"]["/v1/events"]["post"]
    body = operation["requestBody"]["content"]["application/json"]
    assert body["example"][0]["type"] == "purchase"
    assert "Retrying is always safe" in operation["description"]
    assert {"202", "401", "403", "413", "415", "422", "503"} <= set(operation["responses"])


json_values = st.recursive(
    # NaN, infinity and NUL included: the standard library's encoder writes them all.
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
near_valid_events = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.text(max_size=140) | st.integers(),
        "customer_id": st.sampled_from(["c-1", "", "a b"]) | st.text(max_size=5),
        "type": st.sampled_from(["purchase", "Email.Opened", "a..b"]) | json_values,
        "channel": st.sampled_from(["web", "Web", ""]) | json_values,
        "occurred_at": st.sampled_from(
            [
                "2026-11-22T11:00:00Z",
                "2026-11-22T11:00:00",
                "2999-01-01T00:00:00Z",
                "0001-01-01T00:00:00+01:00",
                "9999-12-31T23:59:59-01:00",
            ]
        )
        | json_values,
        "properties": json_values,
        "received_at": st.just("2026-11-22T11:00:00Z"),
    },
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(body=st.lists(near_valid_events, max_size=5) | json_values)
async def test_no_input_ever_causes_a_server_error(client: httpx.AsyncClient, body: Any) -> None:
    # The standard library's encoder, unlike orjson, also writes integers beyond 64 bits: send those too.
    response = await client.post("/v1/events", content=json.dumps(body), headers=WRITER)
    assert response.status_code in (202, 400, 413, 422), response.text
    assert response.status_code == 202 or response.json()["message"]
