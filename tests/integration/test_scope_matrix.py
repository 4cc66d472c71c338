"""Every route of every API, called with no key, and with a key holding each single scope.

No key is 401; a key without the route's scope is 403; the route's own scope gets past both. The table
below names each operation's scope, and the test fails for an operation of an OpenAPI schema that the
table does not name, so a new route cannot ship without its place here.
"""

import re
from collections.abc import AsyncIterator
from contextlib import nullcontext

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.consent.api import create_app as consent_app
from services.consent.settings import ConsentSettings
from services.console.api import create_app as console_create_app
from services.console.settings import ConsoleSettings
from services.console.store import Touchline
from services.identity.api import create_app as identity_app
from services.identity.settings import IdentitySettings
from services.ingest.api import create_app as ingest_app
from services.ingest.settings import IngestSettings
from services.ingest.tracking import CALLS
from services.segments.api import create_app as segments_app
from services.segments.settings import SegmentsSettings
from services.timeline.api import create_app as timeline_app
from services.timeline.settings import TimelineSettings
from shared.auth import SCOPES
from shared.settings import TouchlineSettings
from tests.fakes import FakePublisher
from tests.helpers import asgi_client

KEYS: dict[str, list[str]] = {f"only-{scope}": [scope] for scope in SCOPES}
PUBLIC = {("get", "/healthz"), ("get", "/readyz")}
SEGMENT = {"name": "n", "rule": {"count": {"type": "purchase", "within": "1d"}, "gte": 1}}

# service, method, path (as in the schema), the scope it needs, a path to call and a body to send.
ROUTES: list[tuple[str, str, str, str, str, object]] = [
    ("ingest", "post", "/v1/events", "events:write", "/v1/events", []),
    *(
        (
            "ingest",
            "post",
            f"/v1/{call}",
            "events:write",
            f"/v1/{call}",
            {"userId": "m1", "event": "Signed Up"},
        )
        for call in CALLS
    ),
    ("ingest", "post", "/v1/batch", "events:write", "/v1/batch", {"batch": []}),
    (
        "identity",
        "get",
        "/v1/identities/{kind}/{value}",
        "timeline:read",
        "/v1/identities/email/a@b.io",
        None,
    ),
    (
        "identity",
        "get",
        "/v1/customers/{customer_id}/identities",
        "timeline:read",
        "/v1/customers/m1/identities",
        None,
    ),
    (
        "identity",
        "post",
        "/v1/customers/{customer_id}/identities/split",
        "identities:admin",
        "/v1/customers/m1/identities/split",
        {"kind": "email", "value": "a@b.io"},
    ),
    (
        "timeline",
        "get",
        "/v1/customers/{customer_id}/timeline",
        "timeline:read",
        "/v1/customers/m1/timeline",
        None,
    ),
    (
        "timeline",
        "get",
        "/v1/customers/{customer_id}/profile",
        "timeline:read",
        "/v1/customers/m1/profile",
        None,
    ),
    (
        "consent",
        "put",
        "/v1/customers/{customer_id}/consent/{purpose}",
        "consent:write",
        "/v1/customers/m1/consent/marketing",
        {"status": "granted"},
    ),
    (
        "consent",
        "get",
        "/v1/customers/{customer_id}/consent",
        "consent:read",
        "/v1/customers/m1/consent",
        None,
    ),
    (
        "consent",
        "get",
        "/v1/customers/{customer_id}/consent/history",
        "consent:read",
        "/v1/customers/m1/consent/history",
        None,
    ),
    (
        "consent",
        "post",
        "/v1/customers/{customer_id}/erasure",
        "consent:write",
        "/v1/customers/m1/erasure",
        None,
    ),
    ("segments", "get", "/v1/segments", "segments:admin", "/v1/segments", None),
    ("segments", "post", "/v1/segments", "segments:admin", "/v1/segments", {"id": "matrix", **SEGMENT}),
    ("segments", "get", "/v1/segments/{segment_id}", "segments:admin", "/v1/segments/matrix", None),
    ("segments", "put", "/v1/segments/{segment_id}", "segments:admin", "/v1/segments/matrix", SEGMENT),
    ("segments", "delete", "/v1/segments/{segment_id}", "segments:admin", "/v1/segments/matrix", None),
    (
        "segments",
        "get",
        "/v1/segments/{segment_id}/members",
        "segments:read",
        "/v1/segments/matrix/members",
        None,
    ),
    (
        "segments",
        "get",
        "/v1/segments/{segment_id}/changes",
        "segments:read",
        "/v1/segments/matrix/changes",
        None,
    ),
    (
        "segments",
        "get",
        "/v1/segments/{segment_id}/stats",
        "segments:read",
        "/v1/segments/matrix/stats",
        None,
    ),
    (
        "segments",
        "get",
        "/v1/customers/{customer_id}/segments",
        "segments:read",
        "/v1/customers/m1/segments",
        None,
    ),
]


def apps() -> dict[str, FastAPI]:
    return {
        "ingest": ingest_app(IngestSettings(api_keys=KEYS), FakePublisher()),
        "timeline": timeline_app(TimelineSettings(api_keys=KEYS)),
        "consent": consent_app(ConsentSettings(api_keys=KEYS), FakePublisher()),
        "segments": segments_app(SegmentsSettings(api_keys=KEYS), FakePublisher()),
        "identity": identity_app(IdentitySettings(api_keys=KEYS), FakePublisher()),
    }


def test_the_table_names_every_operation_of_every_schema() -> None:
    named = {(service, method, path) for service, method, path, *_ in ROUTES}
    for service, app in apps().items():
        for path, operations in app.openapi()["paths"].items():
            for method in operations:
                assert (method, path) in PUBLIC or (service, method, path) in named, (service, method, path)


@pytest.fixture(scope="module")
async def clients(kafka: TouchlineSettings, database: str) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    built = apps()
    async with (
        asgi_client(built["ingest"]) as ingest,
        asgi_client(built["timeline"]) as timeline,
        asgi_client(built["consent"]) as consent,
        asgi_client(built["segments"]) as segments,
        asgi_client(built["identity"]) as identity,
    ):
        yield {
            "ingest": ingest,
            "timeline": timeline,
            "consent": consent,
            "segments": segments,
            "identity": identity,
        }


@pytest.mark.parametrize("key", [None, *SCOPES])
@pytest.mark.parametrize(
    ("service", "method", "call", "needed", "body"),
    [(service, method, call, needed, body) for service, method, _, needed, call, body in ROUTES],
    ids=[f"{service}-{method}-{path}" for service, method, path, *_ in ROUTES],
)
async def test_each_route_answers_each_key_by_its_scope(
    clients: dict[str, httpx.AsyncClient],
    service: str,
    method: str,
    call: str,
    needed: str,
    body: object,
    key: str | None,
) -> None:
    headers = {"Authorization": f"Bearer only-{key}"} if key else {}
    sent = {"json": body} if body is not None else {}
    response = await clients[service].request(method.upper(), call, headers=headers, **sent)  # type: ignore[arg-type]
    if key is None:
        assert response.status_code == 401, response.text
    elif key != needed:
        assert response.status_code == 403, response.text
    else:
        assert response.status_code not in (401, 403, 500), response.text


# The console's pages: path, path to call, the scope its data needs (None: any signed-in key), form fields.
CONSOLE: list[tuple[str, str, str, str | None, dict[str, str]]] = [
    ("get", "/", "/", None, {}),
    ("get", "/find", "/find?q=m1", "timeline:read", {}),
    ("get", "/customers/{customer_id}", "/customers/m1", "timeline:read", {}),
    ("get", "/customers/{customer_id}/rows", "/customers/m1/rows", "timeline:read", {}),
    ("get", "/customers/{customer_id}/consent", "/customers/m1/consent", "consent:read", {}),
    (
        "post",
        "/customers/{customer_id}/consent",
        "/customers/m1/consent",
        "consent:write",
        {"purpose": "marketing", "status": "granted", "confirm": "yes"},
    ),
    ("post", "/customers/{customer_id}/erasure", "/customers/m1/erasure", "consent:write", {"confirm": "m1"}),
    ("get", "/segments", "/segments", "segments:admin", {}),
    ("get", "/segments/{segment_id}", "/segments/matrix", "segments:read", {}),
    ("get", "/segments/{segment_id}/live", "/segments/matrix/live", "segments:read", {}),
    ("post", "/signout", "/signout", None, {}),
]
CONSOLE_PUBLIC = {("get", "/signin"), ("post", "/signin"), *PUBLIC, ("get", "/metrics")}


def console_app(clients: dict[str, httpx.AsyncClient]) -> FastAPI:
    return console_create_app(
        ConsoleSettings(api_keys=KEYS),
        lambda: nullcontext(Touchline(clients)),
    )


def test_the_console_table_names_every_page() -> None:
    named = {(method, path) for method, path, *_ in CONSOLE}
    for route in console_app({}).routes:
        if isinstance(route, APIRoute):
            for method in route.methods or ():
                assert (method.lower(), route.path) in named | CONSOLE_PUBLIC, (method, route.path)


@pytest.mark.parametrize("key", [None, *SCOPES])
@pytest.mark.parametrize(
    ("method", "call", "needed", "form"),
    [(method, call, needed, form) for method, _, call, needed, form in CONSOLE],
    ids=[f"console-{method}-{path}" for method, path, *_ in CONSOLE],
)
async def test_each_console_page_shows_only_what_the_keys_scopes_allow(
    clients: dict[str, httpx.AsyncClient],
    method: str,
    call: str,
    needed: str | None,
    form: dict[str, str],
    key: str | None,
) -> None:
    """No session is sent to sign in; a page whose data the key's scopes do not cover is the API's 403,
    shown as such, never the data; the page's own scope gets through."""
    app = console_app(clients)
    async with asgi_client(app) as console:
        if key is not None:
            signed_in = await console.post("/signin", data={"key": f"only-{key}"})
            assert signed_in.status_code == 303, signed_in.text
            console.cookies = signed_in.cookies
            token = re.search(r'name="csrf" value="([^"]+)"', (await console.get("/")).text)
            assert token is not None
            form = form | {"csrf": token.group(1)}
        response = await console.request(method.upper(), call, data=form or None)
    if key is None:
        assert (response.status_code, response.headers["location"]) == (303, "/signin")
    elif needed is not None and key != needed:
        assert response.status_code == 403, response.text  # the API's refusal, shown as the whole page
    else:
        assert response.status_code in (200, 303, 404), response.text
