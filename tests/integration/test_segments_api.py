"""The segment definitions API against the real broker and database."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.segments.api import create_app
from services.segments.settings import SegmentsSettings
from shared.rules import SegmentDefinition
from shared.settings import TouchlineSettings
from shared.topics import SEGMENT_DEFINITIONS
from tests.helpers import asgi_client, consume_until

ADMIN = {"Authorization": "Bearer test-marketer"}
READER = {"Authorization": "Bearer test-reader"}
REPEAT_BUYERS: dict[str, Any] = {"count": {"type": "purchase", "within": "30d"}, "gte": 2}


@pytest.fixture
async def client(kafka: TouchlineSettings, database: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SegmentsSettings())
    async with asgi_client(app) as client:
        yield client


async def test_each_version_is_stored_and_published_to_every_worker(
    client: httpx.AsyncClient, kafka: TouchlineSettings, unique: str
) -> None:
    segment = f"buyers-{unique}"
    created = await client.post(
        "/v1/segments", json={"id": segment, "name": "Buyers", "rule": REPEAT_BUYERS}, headers=ADMIN
    )
    assert created.status_code == 201, created.text
    assert (created.json()["version"], created.json()["rule"]) == (1, REPEAT_BUYERS)

    changed_rule = {**REPEAT_BUYERS, "gte": 3}
    updated = await client.put(
        f"/v1/segments/{segment}", json={"name": "Loyal", "rule": changed_rule}, headers=ADMIN
    )
    assert updated.status_code == 200, updated.text
    assert (updated.json()["version"], updated.json()["name"]) == (2, "Loyal")
    assert updated.json()["created_at"] == created.json()["created_at"]

    read = await client.get(f"/v1/segments/{segment}", headers=ADMIN)
    assert (read.json()["version"], read.json()["rule"]) == (2, changed_rule)
    deleted = await client.delete(f"/v1/segments/{segment}", headers=ADMIN)
    assert (deleted.status_code, deleted.json()["version"], deleted.json()["deleted"]) == (202, 3, True)
    assert (await client.get(f"/v1/segments/{segment}", headers=ADMIN)).status_code == 404

    records = await consume_until(
        kafka.kafka_bootstrap,
        kafka.topic(SEGMENT_DEFINITIONS),
        lambda kept: len(kept) >= 3,
        keep=lambda record: record.key == segment.encode(),
    )
    versions = [SegmentDefinition.model_validate_json(record.value) for record in records]
    assert [(v.version, v.deleted) for v in versions] == [(1, False), (2, False), (3, True)]

    again = await client.post(
        "/v1/segments", json={"id": segment, "name": "Back", "rule": REPEAT_BUYERS}, headers=ADMIN
    )
    assert (again.status_code, again.json()["version"]) == (201, 4)


async def test_an_existing_id_is_a_conflict_and_a_missing_one_is_not_found(
    client: httpx.AsyncClient, unique: str
) -> None:
    body = {"id": f"dup-{unique}", "name": "Dup", "rule": REPEAT_BUYERS}
    assert (await client.post("/v1/segments", json=body, headers=ADMIN)).status_code == 201
    conflict = await client.post("/v1/segments", json=body, headers=ADMIN)
    assert conflict.status_code == 409
    assert "PUT" in conflict.json()["message"]
    missing = await client.put(
        f"/v1/segments/none-{unique}", json={"name": "x", "rule": REPEAT_BUYERS}, headers=ADMIN
    )
    assert missing.status_code == 404
    assert (await client.delete(f"/v1/segments/none-{unique}", headers=ADMIN)).status_code == 404
    assert (await client.get(f"/v1/segments/none-{unique}/members", headers=READER)).status_code == 404


@pytest.mark.parametrize(
    ("rule", "field", "reason"),
    [
        (
            {"all": [REPEAT_BUYERS, {"count": {"within": "3 days"}, "gte": 1}]},
            "rule.all.1.count.within",
            "duration",
        ),
        (
            {"any": [{"not": {"sum": {"type": "purchase", "within": "1d"}, "gte": 1}}]},
            "rule.any.0.not.sum.property",
            "Field required",
        ),
        ({"not": {"counts": {}}}, "rule.not", "exactly one of"),
        ({"count": {"type": "purchase", "within": "1d"}}, "rule", "gte, lte or eq"),
        ({"last": {"type": "Purchase"}, "within": "1d"}, "rule.last.type", "lowercase"),
        ({"last": {"type": "purchase"}, "within": "1d", "not_within": "2d"}, "rule", "exactly one of within"),
        ({"all": [{"count": {"within": "401d"}, "gte": 1}]}, "rule.all.0", "longer than the history"),
    ],
)
async def test_a_bad_rule_names_the_node_and_the_reason(
    client: httpx.AsyncClient, unique: str, rule: dict[str, Any], field: str, reason: str
) -> None:
    response = await client.post(
        "/v1/segments", json={"id": f"bad-{unique}", "name": "Bad", "rule": rule}, headers=ADMIN
    )
    assert response.status_code == 422, response.text
    problems = response.json()["problems"]
    assert any(p["field"] == field and reason in p["reason"] for p in problems), problems


async def test_definitions_need_the_admin_scope_and_reads_the_read_scope(
    client: httpx.AsyncClient, unique: str
) -> None:
    body = {"id": f"scoped-{unique}", "name": "Scoped", "rule": REPEAT_BUYERS}
    assert (await client.post("/v1/segments", json=body, headers=READER)).status_code == 403
    assert (await client.post("/v1/segments", json=body)).status_code == 401
    assert (await client.post("/v1/segments", json=body, headers=ADMIN)).status_code == 201
    assert (await client.get(f"/v1/segments/scoped-{unique}/members", headers=READER)).status_code == 200
    nothing = {"Authorization": "Bearer test-nothing"}
    assert (await client.get(f"/v1/customers/c-{unique}/segments", headers=nothing)).status_code == 403


async def test_the_segment_list_pages_by_id(client: httpx.AsyncClient, unique: str) -> None:
    ids = [f"page-{unique}-{n}" for n in range(5)]
    for segment in ids:
        body = {"id": segment, "name": segment, "rule": REPEAT_BUYERS}
        assert (await client.post("/v1/segments", json=body, headers=ADMIN)).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/segments", params=params, headers=ADMIN)).json()
        seen += [s["id"] for s in page["segments"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [s for s in seen if s.startswith(f"page-{unique}")] == ids
    bad = await client.get("/v1/segments", params={"cursor": "nonsense"}, headers=ADMIN)
    assert (bad.status_code, bad.json()["problems"][0]["field"]) == (422, "cursor")
