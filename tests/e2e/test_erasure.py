"""The right to be forgotten, end to end: after an erasure, the customer's id is searched for in every
column of every table, and found only where README.md's "what stays" says it stays."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from services.consent.api import create_app as consent_app
from services.consent.settings import ConsentSettings
from services.ingest.api import create_app as ingest_app
from services.ingest.settings import IngestSettings
from services.segments.api import create_app as segments_app
from services.segments.settings import SegmentsSettings
from services.timeline.api import create_app as timeline_app
from services.timeline.settings import TimelineSettings
from tests.helpers import ServiceProcess, asgi_client, eventually

WRITER = {"Authorization": "Bearer test-writer"}
DPO = {"Authorization": "Bearer test-dpo"}
READER = {"Authorization": "Bearer test-reader"}
MARKETER = {"Authorization": "Bearer test-marketer"}
# The legal record of consent and of the erasure itself (README.md, "What erasure deletes, and what stays").
STAYS = {"public.consent_history"}


@pytest.fixture
async def apis(
    identity_resolver: ServiceProcess,
    consent_filter: ServiceProcess,
    timeline_projector: ServiceProcess,
    segment_evaluator: ServiceProcess,
    database: str,
) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with (
        asgi_client(ingest_app(IngestSettings())) as ingest,
        asgi_client(consent_app(ConsentSettings())) as consent,
        asgi_client(timeline_app(TimelineSettings())) as timeline,
        asgi_client(segments_app(SegmentsSettings())) as segments,
    ):
        yield {"ingest": ingest, "consent": consent, "timeline": timeline, "segments": segments}


async def tables_holding(dsn: str, text: str) -> set[str]:
    """Every table with a row whose text, JSON or bytes columns contain `text`."""
    connection = await asyncpg.connect(dsn)
    try:
        columns = await connection.fetch(
            "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            " AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea')"
        )
        found = set()
        for column in columns:
            where = (
                f'position($1::bytea in "{column["column_name"]}") > 0'
                if column["data_type"] == "bytea"
                else f"\"{column['column_name']}\"::text LIKE '%' || $1 || '%'"
            )
            table = f'"{column["table_schema"]}"."{column["table_name"]}"'
            value = text.encode() if column["data_type"] == "bytea" else text
            if await connection.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {where})", value):
                found.add(f"{column['table_schema']}.{column['table_name']}")
        return found
    finally:
        await connection.close()


async def test_an_erased_customer_is_found_only_in_the_consent_audit_trail(
    apis: dict[str, httpx.AsyncClient], database: str, unique: str
) -> None:
    customer, segment, kind = f"zoe-{unique}", f"buyers-{unique}", f"buy.u{unique}"
    rule = {"count": {"type": kind, "within": "1d"}, "gte": 1}
    created = await apis["segments"].post(
        "/v1/segments", json={"id": segment, "name": segment, "rule": rule}, headers=MARKETER
    )
    assert created.status_code == 201, created.text
    consent = f"/v1/customers/{customer}/consent/marketing"
    assert (await apis["consent"].put(consent, json={"status": "granted"}, headers=DPO)).status_code == 202
    touch = {
        "event_id": f"{unique}-1",
        "customer_id": customer,
        "type": kind,
        "channel": "web",
        "occurred_at": datetime.now(UTC).isoformat(),
        "properties": {"amount": 12},
    }
    assert (await apis["ingest"].post("/v1/events", json=[touch], headers=WRITER)).status_code == 202
    # Known by address and cookie too, and a visit from before the login that a merge joined to her.
    email, cookie = f"zoe.{unique}@example.com", f"zoe-cookie-{unique}"
    visit = touch | {"event_id": f"{unique}-0", "identities": {"anonymous_id": cookie}, "type": "page.viewed"}
    login = touch | {"event_id": f"{unique}-2", "identities": {"anonymous_id": cookie, "email": email}}
    visit.pop("customer_id")
    for named in (visit, login):
        assert (await apis["ingest"].post("/v1/events", json=[named], headers=WRITER)).status_code == 202

    async def timeline() -> list[str]:
        response = await apis["timeline"].get(f"/v1/customers/{customer}/timeline", headers=READER)
        return (
            [event["event_id"] for event in response.json()["events"]] if response.status_code == 200 else []
        )

    await eventually(timeline, lambda ids: len(ids) == 3)

    async def members() -> list[str]:
        response = await apis["segments"].get(f"/v1/segments/{segment}/members", headers=READER)
        return [member["customer_id"] for member in response.json()["members"]]

    await eventually(members, lambda held: held == [customer])
    assert await tables_holding(database, customer) > STAYS  # it was everywhere a projection keeps it

    erased = await apis["consent"].post(f"/v1/customers/{customer}/erasure", headers=DPO)
    assert erased.status_code == 202, erased.text
    # Done once the exit is published: until then the outbox holds the change that says so.
    await eventually(lambda: tables_holding(database, customer), lambda found: found == STAYS, timeout=60)
    for identifier in (email, cookie):
        assert await tables_holding(database, identifier) == set(), identifier
    assert await eventually(timeline, lambda ids: ids == []) == []
    assert await members() == []
    profile = await apis["timeline"].get(f"/v1/customers/{customer}/profile", headers=READER)
    assert profile.status_code == 404
