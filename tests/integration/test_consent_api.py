"""The consent API against the real broker and database."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from services.consent.api import create_app
from services.consent.settings import ConsentSettings
from services.consent.store import ConsentStore
from shared.db import create_pool
from shared.events import ConsentChange, ConsentStatus, Purpose
from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_LOG
from tests.helpers import asgi_client, consume_until

DPO = {"Authorization": "Bearer test-dpo"}
CRM = {"Authorization": "Bearer test-reader"}


@pytest.fixture
async def client(kafka: TouchlineSettings, database: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ConsentSettings())
    async with asgi_client(app) as client:
        yield client


async def test_a_change_is_durable_in_the_customer_log_before_the_answer(
    client: httpx.AsyncClient, kafka: TouchlineSettings, unique: str
) -> None:
    customer = f"eve-{unique}"
    response = await client.put(
        f"/v1/customers/{customer}/consent/marketing", json={"status": "granted"}, headers=DPO
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["purpose"], body["status"], body["source"]) == ("marketing", "granted", "test-dpo")

    records = await consume_until(
        kafka.kafka_bootstrap,
        kafka.topic(CUSTOMER_LOG),
        lambda kept: len(kept) >= 1,
        keep=lambda record: record.key == customer.encode(),
    )
    change = ConsentChange.model_validate_json(records[0].value)
    assert (change.change_id, change.purpose, change.status) == (
        body["change_id"],
        Purpose.MARKETING,
        ConsentStatus.GRANTED,
    )


async def test_erasure_denies_every_purpose_in_one_ordered_append(
    client: httpx.AsyncClient, kafka: TouchlineSettings, unique: str
) -> None:
    customer = f"fay-{unique}"
    response = await client.post(f"/v1/customers/{customer}/erasure", headers=DPO)
    assert response.status_code == 202
    assert sorted(response.json()["purposes"]) == ["marketing", "profiling"]
    records = await consume_until(
        kafka.kafka_bootstrap,
        kafka.topic(CUSTOMER_LOG),
        lambda kept: len(kept) >= 2,
        keep=lambda record: record.key == customer.encode(),
    )
    changes = [ConsentChange.model_validate_json(record.value) for record in records]
    assert {change.purpose for change in changes} == set(Purpose)
    assert all(change.erasure and change.status is ConsentStatus.DENIED for change in changes)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/customers/c1/consent/newsletter", {"status": "granted"}, "purpose"),
        ("/v1/customers/c1/consent/marketing", {"status": "maybe"}, "status"),
        ("/v1/customers/c1/consent/marketing", {"status": "granted", "why": "x"}, "why"),
        ("/v1/customers/not%20ok/consent/marketing", {"status": "granted"}, "customer_id"),
    ],
)
async def test_bad_input_names_the_field(
    client: httpx.AsyncClient, path: str, body: dict[str, str], field: str
) -> None:
    response = await client.put(path, json=body, headers=DPO)
    assert response.status_code == 422
    assert field in [problem["field"] for problem in response.json()["problems"]]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/customers/c1/consent/marketing"),
        ("GET", "/v1/customers/c1/consent"),
        ("GET", "/v1/customers/c1/consent/history"),
        ("POST", "/v1/customers/c1/erasure"),
    ],
)
async def test_every_route_needs_a_key_with_its_scope(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    body = {"status": "granted"} if method == "PUT" else None
    assert (await client.request(method, path, json=body)).status_code == 401
    assert (
        await client.request(method, path, json=body, headers={"Authorization": "Bearer nope"})
    ).status_code == 401
    assert (
        await client.request(method, path, json=body, headers={"Authorization": "Bearer test-nothing"})
    ).status_code == 403


async def test_a_customer_who_never_said_anything_has_the_documented_defaults(
    client: httpx.AsyncClient, unique: str
) -> None:
    response = await client.get(f"/v1/customers/new-{unique}/consent", headers=CRM)
    assert response.json()["purposes"] == {
        "profiling": {"status": "granted", "origin": "default"},
        "marketing": {"status": "denied", "origin": "default"},
    }


async def test_status_and_history_come_from_the_audit_trail_newest_first_in_pages(
    client: httpx.AsyncClient, database: str, unique: str
) -> None:
    customer = f"gus-{unique}"
    start = datetime(2026, 11, 1, tzinfo=UTC)
    pool = await create_pool(database)
    try:
        store = ConsentStore(pool)
        for offset, (purpose, status) in enumerate(
            [
                ("marketing", "granted"),
                ("profiling", "denied"),
                ("marketing", "denied"),
                ("marketing", "granted"),
                ("profiling", "granted"),
            ]
        ):
            change = ConsentChange(
                change_id=f"{unique}-{offset}",
                customer_id=customer,
                purpose=purpose,
                status=status,
                changed_at=start + timedelta(days=offset),
                source="crm",
            )
            await store.record([(change, 0, 100 + offset)])
            await store.record([(change, 0, 100 + offset)])  # a replay stores nothing twice
    finally:
        await pool.close()

    current = (await client.get(f"/v1/customers/{customer}/consent", headers=CRM)).json()["purposes"]
    assert current["marketing"]["status"] == "granted"
    assert current["marketing"]["origin"] == "explicit"
    assert current["marketing"]["change_id"] == f"{unique}-3"
    assert current["profiling"]["change_id"] == f"{unique}-4"

    seen, cursor = [], None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = (
            await client.get(f"/v1/customers/{customer}/consent/history", params=params, headers=CRM)
        ).json()
        seen += [change["change_id"] for change in page["changes"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"{unique}-{n}" for n in (4, 3, 2, 1, 0)]

    bad = await client.get(f"/v1/customers/{customer}/consent/history", params={"cursor": "%%%"}, headers=CRM)
    assert bad.status_code == 422
    assert orjson.loads(bad.content)["problems"][0]["field"] == "cursor"
