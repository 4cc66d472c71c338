"""Inputs that once answered a plain-text 500, each now a 4xx naming the field; a database away is 503.

Each case is one that issue 14 found: dates past datetime's range, crafted cursors, NUL characters that
PostgreSQL cannot hold, numbers no JSON column takes. They run against the real database, where they
used to fail.
"""

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from services.consent.api import create_app as consent_app
from services.consent.settings import ConsentSettings
from services.segments.api import create_app as segments_app
from services.segments.settings import SegmentsSettings
from services.timeline.api import create_app as timeline_app
from services.timeline.settings import TimelineSettings
from shared.settings import TouchlineSettings
from tests.fakes import FakePublisher
from tests.helpers import asgi_client

READER = {"Authorization": "Bearer test-reader"}
MARKETER = {"Authorization": "Bearer test-marketer"}


def crafted(*position: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


@pytest.fixture
async def clients(kafka: TouchlineSettings, database: str) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    apps: dict[str, FastAPI] = {
        "timeline": timeline_app(TimelineSettings()),
        "consent": consent_app(ConsentSettings(), FakePublisher()),
        "segments": segments_app(SegmentsSettings(), FakePublisher()),
    }
    async with (
        asgi_client(apps["timeline"]) as timeline,
        asgi_client(apps["consent"]) as consent,
        asgi_client(apps["segments"]) as segments,
    ):
        yield {"timeline": timeline, "consent": consent, "segments": segments}


TIMELINE = "/v1/customers/c1/timeline"
CASES = [
    ("timeline", TIMELINE, {"since": "0001-01-01T00:00:00+01:00"}, "since"),
    ("timeline", TIMELINE, {"until": "9999-12-31T23:59:59-01:00"}, "until"),
    ("timeline", TIMELINE, {"cursor": crafted("2026-11-22T10:00:00", "e1")}, "cursor"),  # naive
    ("timeline", TIMELINE, {"cursor": crafted("9999-12-31T23:59:59-01:00", "e1")}, "cursor"),
    ("timeline", TIMELINE, {"cursor": crafted("2026-11-22T10:00:00Z", "e\x001")}, "cursor"),
    ("timeline", TIMELINE, {"types": "purchase\x00"}, "types"),
    ("timeline", TIMELINE, {"channels": "web,\x00"}, "channels"),
    ("consent", "/v1/customers/c1/consent/history", {"cursor": crafted(2**64 - 1)}, "cursor"),
    ("consent", "/v1/customers/c1/consent/history", {"cursor": crafted(True)}, "cursor"),
    ("segments", "/v1/segments", {"cursor": crafted("a\x00b")}, "cursor"),
    ("segments", "/v1/segments/s1/members", {"cursor": crafted("a\x00b")}, "cursor"),
]


@pytest.mark.parametrize(("service", "path", "params", "field"), CASES)
async def test_a_crafted_parameter_is_a_422_naming_it(
    clients: dict[str, httpx.AsyncClient], service: str, path: str, params: dict[str, str], field: str
) -> None:
    headers = MARKETER if service == "segments" and path == "/v1/segments" else READER
    response = await clients[service].get(path, params=params, headers=headers)
    assert response.status_code == 422, response.text
    assert [problem["field"] for problem in response.json()["problems"]] == [field]


COUNT = {"count": {"type": "purchase", "within": "1d"}, "gte": 1}
BODIES = [
    ({"id": "s-nul", "name": "a\x00b", "rule": COUNT}, "name"),
    (
        {
            "id": "s-key",
            "name": "n",
            "rule": {"count": {"properties": {"a\x00": 1}, "within": "1d"}, "gte": 1},
        },
        "rule",
    ),
    (
        {
            "id": "s-val",
            "name": "n",
            "rule": {"count": {"properties": {"a": "b\x00"}, "within": "1d"}, "gte": 1},
        },
        "rule",
    ),
]


@pytest.mark.parametrize(("body", "field"), BODIES)
async def test_a_segment_that_postgresql_could_not_store_is_a_422(
    clients: dict[str, httpx.AsyncClient], body: dict[str, Any], field: str
) -> None:
    response = await clients["segments"].post("/v1/segments", json=body, headers=MARKETER)
    assert response.status_code == 422, response.text
    fields = [problem["field"] for problem in response.json()["problems"]]
    assert fields
    assert all(name.startswith(field) for name in fields), fields


async def test_a_nan_threshold_is_a_422(clients: dict[str, httpx.AsyncClient]) -> None:
    content = b'{"id": "s-nan", "name": "n", "rule": {"count": {"within": "1d"}, "gte": NaN}}'
    headers = MARKETER | {"Content-Type": "application/json"}
    response = await clients["segments"].post("/v1/segments", content=content, headers=headers)
    assert response.status_code == 422, response.text


class Unreachable:
    """A store whose database has gone: every call fails as asyncpg does when the server is down."""

    def __getattr__(self, name: str) -> Any:
        async def unreachable(*args: object, **kwargs: object) -> None:
            raise ConnectionRefusedError(111, "Connect call failed")

        return unreachable


@pytest.mark.parametrize(
    ("service", "path", "attribute"),
    [
        ("timeline", TIMELINE, "store"),
        ("timeline", "/v1/customers/c1/profile", "store"),
        ("consent", "/v1/customers/c1/consent", "store"),
        ("consent", "/v1/customers/c1/consent/history", "store"),
        ("segments", "/v1/customers/c1/segments", "store"),
        ("segments", "/v1/segments/s1/members", "store"),
    ],
)
async def test_a_database_away_is_503_with_retry_after_on_read_routes(
    clients: dict[str, httpx.AsyncClient], service: str, path: str, attribute: str
) -> None:
    client = clients[service]
    app = client._transport.app  # type: ignore[attr-defined]
    original = getattr(app.state, attribute)
    setattr(app.state, attribute, Unreachable())
    try:
        response = await client.get(path, headers=READER)
    finally:
        setattr(app.state, attribute, original)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert response.json()["error"] == "unavailable"
