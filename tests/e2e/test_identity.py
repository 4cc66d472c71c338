"""Touches naming identities, through ingest, the resolver, the consent filter and the timeline projector
on the real broker: each lands on its person's profile, readable by any of its identifiers."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from fastapi import FastAPI
from segment.analytics import Client as SegmentClient

from services.consent.api import create_app as consent_app
from services.consent.settings import ConsentSettings
from services.identity.api import create_app as identity_app
from services.identity.domain import anonymous_profile
from services.identity.settings import IdentitySettings
from services.ingest.api import create_app as ingest_app
from services.ingest.settings import IngestSettings
from services.segments.api import create_app as segments_api
from services.segments.settings import SegmentsSettings
from services.timeline.api import create_app as timeline_app
from services.timeline.settings import TimelineSettings
from shared.settings import TouchlineSettings
from shared.topics import IDENTITY_CHANGES
from tests.bench.ingest import free_port
from tests.helpers import ROOT, ServiceProcess, asgi_client, eventually
from tests.segments_support import changes_until

WRITER = {"Authorization": "Bearer test-writer"}
DPO = {"Authorization": "Bearer test-dpo"}
CRM = {"Authorization": "Bearer test-reader"}
MARKETER = {"Authorization": "Bearer test-marketer"}
STEWARD = {"Authorization": "Bearer test-steward"}
START = datetime(2026, 11, 1, 9, tzinfo=UTC)
NODE_CHECK = ROOT / "tests/segment_node"  # `make test` installs its packages


class Clients:
    def __init__(
        self, ingest: httpx.AsyncClient, identity: httpx.AsyncClient, timeline: httpx.AsyncClient
    ) -> None:
        self.ingest, self.identity, self.timeline = ingest, identity, timeline

    async def touch(self, event_id: str, minutes: int, channel: str, type_: str, **who: Any) -> None:
        event = {
            "event_id": event_id,
            "type": type_,
            "channel": channel,
            "occurred_at": (START + timedelta(minutes=minutes)).isoformat(),
        } | who
        response = await self.ingest.post("/v1/events", json=[event], headers=WRITER)
        assert response.status_code == 202, response.text

    async def holder(self, kind: str, value: str) -> str | None:
        response = await self.identity.get(f"/v1/identities/{kind}/{value}", headers=CRM)
        return response.json()["profile_id"] if response.status_code == 200 else None

    async def eventually_held_by(self, kind: str, value: str, profile: str) -> bool:
        return await eventually(lambda: self.holder(kind, value), lambda held: held == profile) == profile

    async def timeline_events(self, profile: str) -> list[dict[str, Any]]:
        response = await self.timeline.get(f"/v1/customers/{profile}/timeline", headers=CRM)
        events: list[dict[str, Any]] = response.json()["events"] if response.status_code == 200 else []
        return events

    async def timeline_ids(self, profile: str) -> list[str]:
        return [event["event_id"] for event in await self.timeline_events(profile)]


@pytest.fixture
async def consent() -> AsyncIterator[httpx.AsyncClient]:
    app = consent_app(ConsentSettings())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client,
    ):
        yield client


@pytest.fixture
async def clients(
    identity_resolver: ServiceProcess, consent_filter: ServiceProcess, timeline_projector: ServiceProcess
) -> AsyncIterator[Clients]:
    apps: list[FastAPI] = [
        ingest_app(IngestSettings()),
        identity_app(IdentitySettings()),
        timeline_app(TimelineSettings()),
    ]
    async with AsyncExitStack() as stack:
        made = []
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app)
            made.append(
                await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://t"))
            )
        yield Clients(*made)


async def changes_caused_by(settings: TouchlineSettings, event_ids: set[str]) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        settings.topic(IDENTITY_CHANGES),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        found: list[dict[str, Any]] = []
        for records in (await consumer.getmany(timeout_ms=3000)).values():
            found += [orjson.loads(r.value or b"") for r in records]
        return [change for change in found if change["caused_by"] in event_ids]
    finally:
        await consumer.stop()


async def test_a_visitor_who_logs_in_and_their_email_and_card_reach_one_profile(
    clients: Clients, unique: str, settings: TouchlineSettings
) -> None:
    customer, anonymous, email, card = (
        f"c-{unique}",
        f"anon-{unique}",
        f"Ada.{unique}@Example.com",
        f"L-{unique}",
    )
    await clients.touch(f"{unique}-visit", 0, "web", "page.viewed", identities={"anonymous_id": anonymous})
    visitor = await eventually(lambda: clients.holder("anonymous_id", anonymous), bool)
    assert visitor is not None
    assert visitor.startswith("profile:")
    assert await eventually(lambda: clients.timeline_ids(visitor), bool) == [f"{unique}-visit"]

    await clients.touch(
        f"{unique}-login",
        5,
        "web",
        "login",
        customer_id=customer,
        identities={"anonymous_id": anonymous, "email": email},
    )
    await clients.touch(f"{unique}-open", 60, "email", "email.opened", identities={"email": email.upper()})
    await clients.touch(f"{unique}-buy", 120, "store", "purchase", identities={"loyalty_card": card})
    await clients.touch(
        f"{unique}-card",
        121,
        "store",
        "loyalty.linked",
        customer_id=customer,
        identities={"loyalty_card": card},
    )

    for kind, value in (
        ("anonymous_id", anonymous),
        ("email", email),
        ("loyalty_card", card),
        ("customer_id", customer),
    ):
        assert await clients.eventually_held_by(kind, value, customer)
    # The merges join the timelines: every touch of the person, newest first, by any of their ids.
    person = [f"{unique}-{name}" for name in ("card", "buy", "open", "login", "visit")]
    assert await eventually(lambda: clients.timeline_ids(customer), lambda ids: ids == person) == person
    assert await clients.timeline_ids(visitor) == person
    profile = (await clients.timeline.get(f"/v1/customers/{visitor}/profile", headers=CRM)).json()
    assert (profile["customer_id"], profile["event_count"], profile["purchase_count"]) == (customer, 5, 1)

    why = (await clients.identity.get(f"/v1/customers/{visitor}/identities", headers=CRM)).json()
    assert why["profile_id"] == customer, "an absorbed profile's id answers for its survivor"
    merges = [(h["other_profile_id"], h["caused_by"]) for h in why["history"] if h["change"] == "merged"]
    assert (visitor, f"{unique}-login") in merges
    assert sorted(i["kind"] for i in why["identifiers"]) == [
        "anonymous_id",
        "customer_id",
        "email",
        "loyalty_card",
    ]

    published = await changes_caused_by(settings, {f"{unique}-login", f"{unique}-card"})
    assert sorted(c["change"] for c in published if c["change"] == "merged") == ["merged", "merged"]


async def test_two_customers_sharing_an_email_stay_apart_and_a_blocked_value_links_nothing(
    clients: Clients, unique: str
) -> None:
    shared_email = f"family.{unique}@example.com"
    await clients.touch(
        f"{unique}-1",
        0,
        "web",
        "login",
        customer_id=f"a-{unique}",
        identities={"email": shared_email, "anonymous_id": "undefined"},
    )
    await clients.touch(
        f"{unique}-2",
        1,
        "web",
        "login",
        customer_id=f"b-{unique}",
        identities={"email": shared_email, "anonymous_id": "undefined"},
    )
    assert await eventually(lambda: clients.timeline_ids(f"b-{unique}"), bool) == [f"{unique}-2"]
    assert await clients.holder("email", shared_email) == f"a-{unique}"
    assert await clients.holder("anonymous_id", "undefined") is None
    why = (await clients.identity.get(f"/v1/customers/b-{unique}/identities", headers=CRM)).json()
    [conflict] = [h for h in why["history"] if h["change"] == "conflict"]
    assert (conflict["other_profile_id"], conflict["kind"]) == (f"a-{unique}", "email")
    assert "customer_id" in conflict["reason"]


@pytest.fixture
async def ingest_http(test_env: dict[str, str], logs: Path) -> AsyncIterator[str]:
    """An ingest API as a process on a port of its own, for clients that speak HTTP, not ASGI."""
    port = str(free_port())
    env = test_env | {"TOUCHLINE_INGEST_PORT": port}
    api = ServiceProcess("services.ingest", "api", env, logs / "segment-ingest.log").start()
    try:
        await api.wait_ready(f"http://127.0.0.1:{port}/readyz")
        yield f"http://127.0.0.1:{port}"
    finally:
        api.stop()


def segment_calls(host: str, unique: str, user: str, anonymous: str) -> list[Exception]:
    """A web shop's backend using segment-analytics-python, unchanged but for its host."""
    errors: list[Exception] = []
    segment = SegmentClient("test-writer", host=host, sync_mode=True, on_error=lambda e, _: errors.append(e))
    segment.page(anonymous_id=anonymous, name="Home", properties={"path": "/"}, message_id=f"{unique}-p")
    traits = {"email": f"Seg.{unique}@Example.com", "plan": "gold"}
    segment.identify(user, traits, anonymous_id=anonymous, message_id=f"{unique}-i")
    segment.track(user, "Order Completed", {"total": 42.5, "currency": "EUR"}, message_id=f"{unique}-t")
    segment.track(user, "Signed Up", message_id=f"{unique}-s")
    segment.flush()
    return errors


async def test_segments_own_python_library_lands_calls_in_the_timeline(
    clients: Clients, ingest_http: str, unique: str
) -> None:
    user, anonymous = f"seg-{unique}", f"seg-anon-{unique}"
    assert await asyncio.to_thread(segment_calls, ingest_http, unique, user, anonymous) == []

    # The page view came before the identify call named the visitor: the merge joins it to the user.
    events = await eventually(lambda: clients.timeline_events(user), lambda found: len(found) == 4)
    by_id = {event["event_id"]: event for event in events}
    assert by_id[f"{unique}-p"]["type"] == "page.viewed"
    assert by_id[f"{unique}-t"]["type"] == "purchase"
    assert by_id[f"{unique}-t"]["properties"]["amount"] == 42.5
    assert by_id[f"{unique}-t"]["properties"]["segment"]["context"]["library"]["name"] == "analytics-python"
    assert by_id[f"{unique}-s"]["type"] == "signed_up"
    assert by_id[f"{unique}-i"]["type"] == "identify"
    assert await clients.holder("email", f"seg.{unique}@example.com") == user
    assert await clients.holder("anonymous_id", anonymous) == user
    profile = (await clients.timeline.get(f"/v1/customers/{user}/profile", headers=CRM)).json()
    assert {name: trait["value"] for name, trait in profile["traits"].items()} == {
        "email": f"Seg.{unique}@Example.com",
        "plan": "gold",
    }
    assert profile["traits"]["plan"]["source"] == "test-shop"


async def test_a_denial_stated_before_a_merge_holds_for_the_person_after_it(
    clients: Clients, consent: httpx.AsyncClient, unique: str
) -> None:
    anonymous, customer = f"anon-{unique}", f"c-{unique}"
    await clients.touch(f"{unique}-visit", 0, "web", "page.viewed", identities={"anonymous_id": anonymous})
    await clients.touch(f"{unique}-before", 1, "web", "page.viewed", customer_id=customer)
    assert await eventually(lambda: clients.timeline_ids(customer), bool) == [f"{unique}-before"]
    visitor = await eventually(lambda: clients.holder("anonymous_id", anonymous), bool)
    denied = await consent.put(
        f"/v1/customers/{visitor}/consent/profiling", json={"status": "denied"}, headers=DPO
    )
    assert denied.status_code == 202, denied.text
    await clients.touch(
        f"{unique}-login", 5, "web", "login", customer_id=customer, identities={"anonymous_id": anonymous}
    )

    async def profiling() -> str | None:
        response = await consent.get(f"/v1/customers/{customer}/consent", headers=DPO)
        return response.json()["purposes"]["profiling"]["status"] if response.status_code == 200 else None

    assert await eventually(profiling, lambda status: status == "denied") == "denied"
    assert await eventually(lambda: clients.timeline_ids(customer), lambda ids: ids == []) == []
    history = (await consent.get(f"/v1/customers/{customer}/consent/history", headers=DPO)).json()
    assert any(change["source"] == "identity-merge" for change in history["changes"])


async def test_segments_own_node_library_lands_calls_in_the_timeline(
    clients: Clients, ingest_http: str, unique: str
) -> None:
    """@segment/analytics-node, unchanged but for its host (tests/segment_node/send.mjs)."""
    user, anonymous = f"node-{unique}", f"node-anon-{unique}"
    sent = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_CHECK / "send.mjs"),
        ingest_http,
        "test-writer",
        user,
        anonymous,
        unique,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await sent.communicate()
    assert sent.returncode == 0, output.decode()

    events = await eventually(lambda: clients.timeline_events(user), lambda found: len(found) == 4)
    by_id = {event["event_id"]: event for event in events}
    assert [by_id[f"{unique}-{n}"]["type"] for n in "pitv"] == [
        "page.viewed",
        "identify",
        "purchase",
        "product.viewed",
    ]
    assert by_id[f"{unique}-t"]["properties"]["amount"] == 19.5
    assert (
        by_id[f"{unique}-t"]["properties"]["segment"]["context"]["library"]["name"]
        == "@segment/analytics-node"
    )
    assert await clients.holder("email", f"node.{unique}@example.com") == user


async def test_segment_membership_follows_a_merge_over_the_joined_history(
    clients: Clients,
    consent: httpx.AsyncClient,
    segment_evaluator: ServiceProcess,
    kafka: TouchlineSettings,
    unique: str,
) -> None:
    """A visitor in a visitors' segment logs in as a customer who bought before: the visitor's profile
    exits, and the customer enters both the visitors' segment and the one needing a visit and a purchase,
    each with reason identity_merged; nothing enters on the way that the joined history does not hold."""
    visit, buy = f"visit.u{unique}", f"buy.u{unique}"
    visitors, buyers = f"visitors-{unique}", f"browsing-buyers-{unique}"
    segments_app = segments_api(SegmentsSettings())
    anonymous, customer = f"anon-{unique}", f"c-{unique}"
    async with asgi_client(segments_app) as segments:
        for segment, rule in (
            (visitors, {"count": {"type": visit, "within": "60d"}, "gte": 1}),
            (
                buyers,
                {
                    "all": [
                        {"count": {"type": visit, "within": "60d"}, "gte": 1},
                        {"count": {"type": buy, "within": "60d"}, "gte": 1},
                    ]
                },
            ),
        ):
            response = await segments.post(
                "/v1/segments", json={"id": segment, "name": segment, "rule": rule}, headers=MARKETER
            )
            assert response.status_code == 201, response.text
        now = int((datetime.now(UTC) - START).total_seconds() // 60)
        # Marketing is opt-in, and segments need it: both sides opt in before the touches that count.
        await clients.touch(
            f"{unique}-hello", now - 40, "web", "page.viewed", identities={"anonymous_id": anonymous}
        )
        visitor = await eventually(lambda: clients.holder("anonymous_id", anonymous), bool)
        assert visitor is not None
        for profile in (visitor, customer):
            granted = await consent.put(
                f"/v1/customers/{profile}/consent/marketing", json={"status": "granted"}, headers=DPO
            )
            assert granted.status_code == 202, granted.text
        await clients.touch(f"{unique}-visit", now - 30, "web", visit, identities={"anonymous_id": anonymous})
        [entered] = await changes_until(kafka, {visitor}, 1)
        assert (entered.segment_id, entered.transition, entered.reason) == (visitors, "entered", "event")
        await clients.touch(f"{unique}-buy", now - 20, "store", buy, customer_id=customer)
        await clients.touch(
            f"{unique}-login",
            now - 10,
            "web",
            "login",
            customer_id=customer,
            identities={"anonymous_id": anonymous},
        )

        # Topic order holds per profile, not across partitions: compared as each profile's own sequence.
        changes = await changes_until(kafka, {visitor, customer}, 4)
        assert [(c.segment_id, c.transition, c.reason) for c in changes if c.customer_id == visitor] == [
            (visitors, "entered", "event"),
            (visitors, "exited", "identity_merged"),
        ]
        assert {(c.segment_id, c.transition, c.reason) for c in changes if c.customer_id == customer} == {
            (visitors, "entered", "identity_merged"),
            (buyers, "entered", "identity_merged"),
        }

        async def members(segment: str) -> list[str]:
            response = await segments.get(f"/v1/segments/{segment}/members", headers=CRM)
            return [member["customer_id"] for member in response.json()["members"]]

        assert await members(visitors) == [customer]
        assert await members(buyers) == [customer]


async def test_a_split_moves_the_touches_the_identifier_decided_back_out_and_membership_follows(
    clients: Clients,
    consent: httpx.AsyncClient,
    segment_evaluator: ServiceProcess,
    kafka: TouchlineSettings,
    unique: str,
) -> None:
    """A store purchase known only by a loyalty card joins a customer when the card is linked to them;
    the card was not theirs: splitting it off gives the purchase back to the card's own profile, in the
    timeline, the profile summary and segments."""
    customer, card = f"c-{unique}", f"L-{unique}"
    card_profile = anonymous_profile(("loyalty_card", card))
    buyers = f"card-buyers-{unique}"
    rule = {"count": {"type": "purchase", "properties": {"campaign": unique}, "within": "60d"}, "gte": 1}
    async with asgi_client(segments_api(SegmentsSettings())) as segments:
        response = await segments.post(
            "/v1/segments", json={"id": buyers, "name": buyers, "rule": rule}, headers=MARKETER
        )
        assert response.status_code == 201, response.text
        for profile in (card_profile, customer):
            granted = await consent.put(
                f"/v1/customers/{profile}/consent/marketing", json={"status": "granted"}, headers=DPO
            )
            assert granted.status_code == 202, granted.text
        now = int((datetime.now(UTC) - START).total_seconds() // 60)
        await clients.touch(
            f"{unique}-buy",
            now - 30,
            "store",
            "purchase",
            identities={"loyalty_card": card},
            properties={"campaign": unique, "amount": 30},
        )
        [entered] = await changes_until(kafka, {card_profile}, 1)
        assert (entered.transition, entered.reason) == ("entered", "event")
        await clients.touch(
            f"{unique}-link",
            now - 20,
            "store",
            "loyalty.linked",
            customer_id=customer,
            identities={"loyalty_card": card},
        )
        joined = [f"{unique}-link", f"{unique}-buy"]
        assert await eventually(lambda: clients.timeline_ids(customer), lambda ids: ids == joined) == joined
        split = await clients.identity.post(
            f"/v1/customers/{customer}/identities/split",
            json={"kind": "loyalty_card", "value": card},
            headers=STEWARD,
        )
        assert split.status_code == 202, split.text
        assert split.json()["split_off"] == card_profile
        assert await clients.eventually_held_by("loyalty_card", card, card_profile)
        assert (
            await eventually(lambda: clients.timeline_ids(customer), lambda ids: ids == joined[:1])
            == joined[:1]
        )
        assert await clients.timeline_ids(card_profile) == [f"{unique}-buy"]
        summary = (await clients.timeline.get(f"/v1/customers/{customer}/profile", headers=CRM)).json()
        assert (summary["event_count"], summary["purchase_count"]) == (1, 0)

        # Topic order holds per profile, not across partitions: compared as each profile's own sequence.
        followed = await changes_until(kafka, {card_profile, customer}, 5)
        assert [(c.transition, c.reason) for c in followed if c.customer_id == card_profile] == [
            ("entered", "event"),
            ("exited", "identity_merged"),
            ("entered", "event"),
        ]
        assert [(c.transition, c.reason) for c in followed if c.customer_id == customer] == [
            ("entered", "identity_merged"),
            ("exited", "identity_split"),
        ]
        why = (await clients.identity.get(f"/v1/customers/{card_profile}/identities", headers=CRM)).json()
        assert why["profile_id"] == card_profile, "the card's profile is its own again"
        assert any(h["change"] == "split" and h["other_profile_id"] == customer for h in why["history"])


async def test_a_split_is_refused_with_the_reason_when_the_identifier_cannot_leave(
    clients: Clients, unique: str
) -> None:
    customer = f"c-{unique}"
    await clients.touch(
        f"{unique}-t", 0, "web", "login", customer_id=customer, identities={"email": f"{unique}@x.io"}
    )
    assert await clients.eventually_held_by("email", f"{unique}@x.io", customer)
    split = clients.identity.post
    own_id = await split(
        f"/v1/customers/{customer}/identities/split",
        json={"kind": "customer_id", "value": customer},
        headers=STEWARD,
    )
    assert own_id.status_code == 409, own_id.text
    assert "names its profile" in own_id.json()["message"]
    not_held = await split(
        f"/v1/customers/{customer}/identities/split",
        json={"kind": "email", "value": "other@x.io"},
        headers=STEWARD,
    )
    assert not_held.status_code == 404, not_held.text
    wrong_scope = await split(
        f"/v1/customers/{customer}/identities/split",
        json={"kind": "email", "value": f"{unique}@x.io"},
        headers=CRM,
    )
    assert wrong_scope.status_code == 403
