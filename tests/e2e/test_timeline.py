"""Touches through ingest, consent and the real broker into the timeline, read back through its API."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.consent.api import create_app as consent_app
from services.consent.settings import ConsentSettings
from services.ingest.api import create_app as ingest_app
from services.ingest.settings import IngestSettings
from services.timeline.api import create_app as timeline_app
from services.timeline.settings import TimelineSettings
from tests.helpers import ServiceProcess, eventually

WRITER = {"Authorization": "Bearer test-writer"}
DPO = {"Authorization": "Bearer test-dpo"}
CRM = {"Authorization": "Bearer test-reader"}
START = datetime(2026, 11, 1, 9, tzinfo=UTC)


class Clients:
    def __init__(
        self, ingest: httpx.AsyncClient, consent: httpx.AsyncClient, timeline: httpx.AsyncClient
    ) -> None:
        self.ingest, self.consent, self.timeline = ingest, consent, timeline

    async def send(
        self, customer: str, event_ids_and_minutes: list[tuple[str, int]], type_: str = "page.viewed"
    ) -> None:
        batch = [
            {
                "event_id": event_id,
                "customer_id": customer,
                "type": type_,
                "channel": "web",
                "occurred_at": (START + timedelta(minutes=minutes)).isoformat(),
                "properties": {"amount": 10},
            }
            for event_id, minutes in event_ids_and_minutes
        ]
        response = await self.ingest.post("/v1/events", json=batch, headers=WRITER)
        assert response.status_code == 202, response.text

    async def timeline_ids(self, customer: str) -> list[str] | None:
        response = await self.timeline.get(
            f"/v1/customers/{customer}/timeline", params={"limit": 500}, headers=CRM
        )
        if response.status_code == 404:
            return None
        return [event["event_id"] for event in response.json()["events"]]

    async def set_consent(self, customer: str, purpose: str, status: str) -> None:
        response = await self.consent.put(
            f"/v1/customers/{customer}/consent/{purpose}", json={"status": status}, headers=DPO
        )
        assert response.status_code == 202


@pytest.fixture
async def clients(
    consent_filter: ServiceProcess, timeline_projector: ServiceProcess, database: str
) -> AsyncIterator[Clients]:
    apps: list[FastAPI] = [
        ingest_app(IngestSettings()),
        consent_app(ConsentSettings()),
        timeline_app(TimelineSettings()),
    ]
    async with AsyncExitStack() as stack:
        made = []
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
            made.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://touchline")
                )
            )
        yield Clients(*made)


async def test_touches_appear_in_occurred_at_order_once_each(clients: Clients, unique: str) -> None:
    customer = f"ola-{unique}"
    sent = [(f"{unique}-{minutes:03d}", minutes) for minutes in (30, 5, 120, 60, 1, 90)]
    await clients.send(customer, sent)
    await clients.send(customer, sent[:3])  # a client retry: the same events again
    newest_first = [event_id for event_id, _ in sorted(sent, key=lambda pair: -pair[1])]
    assert (
        await eventually(lambda: clients.timeline_ids(customer), lambda ids: ids == newest_first)
        == newest_first
    )

    page = (
        await clients.timeline.get(f"/v1/customers/{customer}/timeline", params={"limit": 2}, headers=CRM)
    ).json()
    following = (
        await clients.timeline.get(
            f"/v1/customers/{customer}/timeline",
            params={"limit": 2, "cursor": page["next_cursor"]},
            headers=CRM,
        )
    ).json()
    assert [event["event_id"] for event in page["events"] + following["events"]] == newest_first[:4]

    profile = (await clients.timeline.get(f"/v1/customers/{customer}/profile", headers=CRM)).json()
    assert profile["event_count"] == 6
    assert profile["first_seen"].startswith("2026-11-01T09:01")
    assert profile["consent"] == {"profiling": "granted", "marketing": "denied"}
    assert profile["segments"] == []  # marketing denied: segments never see this customer

    # Least privilege: a key with only timeline:read sees the timeline's own summary, nothing of the
    # consent or segments services.
    narrow = {"Authorization": "Bearer test-timeline-only"}
    summary = (await clients.timeline.get(f"/v1/customers/{customer}/profile", headers=narrow)).json()
    assert summary["event_count"] == 6
    assert "consent" not in summary
    assert "segments" not in summary


async def test_a_revocation_deletes_and_only_touches_after_a_new_grant_come_back(
    clients: Clients, unique: str
) -> None:
    customer = f"pia-{unique}"
    await clients.send(customer, [(f"{unique}-before", 1)])
    await eventually(lambda: clients.timeline_ids(customer), lambda ids: ids == [f"{unique}-before"])

    await clients.set_consent(customer, "profiling", "denied")
    await eventually(lambda: clients.timeline_ids(customer), lambda ids: ids is None)
    await clients.send(customer, [(f"{unique}-while-denied", 2)])
    await clients.set_consent(customer, "profiling", "granted")
    await clients.send(customer, [(f"{unique}-after-grant", 3)])
    # The customer's log order is before, deny, while-denied, grant, after-grant: once after-grant is
    # projected, while-denied has been judged, and it must not be there.
    ids = await eventually(lambda: clients.timeline_ids(customer), lambda ids: ids is not None)
    assert ids == [f"{unique}-after-grant"]


async def test_erasure_removes_timeline_and_profile(clients: Clients, unique: str) -> None:
    customer = f"rui-{unique}"
    await clients.send(customer, [(f"{unique}-1", 1), (f"{unique}-2", 2)], type_="purchase")
    await eventually(lambda: clients.timeline_ids(customer), lambda ids: ids is not None and len(ids) == 2)
    assert (await clients.consent.post(f"/v1/customers/{customer}/erasure", headers=DPO)).status_code == 202
    await eventually(lambda: clients.timeline_ids(customer), lambda ids: ids is None)
    profile = await clients.timeline.get(f"/v1/customers/{customer}/profile", headers=CRM)
    assert profile.status_code == 404
    assert "no timeline" in profile.json()["message"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"cursor": "nope"}, "cursor"),
        ({"since": "2026-11-01T00:00:00"}, "since"),
        ({"until": "yesterday"}, "until"),
    ],
)
async def test_bad_parameters_are_named(clients: Clients, params: dict[str, Any], field: str) -> None:
    response = await clients.timeline.get("/v1/customers/someone/timeline", params=params, headers=CRM)
    assert response.status_code == 422
    assert field in [problem["field"] for problem in response.json()["problems"]]


async def test_reads_need_the_timeline_scope(clients: Clients) -> None:
    for path in ("/v1/customers/x/timeline", "/v1/customers/x/profile"):
        assert (await clients.timeline.get(path)).status_code == 401
        assert (
            await clients.timeline.get(path, headers={"Authorization": "Bearer test-dpo"})
        ).status_code == 403
