"""The front door: no body byte is read before the key is known, and no more than a route allows."""

import asyncio
import base64
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.types import Message

from services.consent.api import create_app as consent_app
from services.consent.settings import ConsentSettings
from services.segments.api import create_app as segments_app
from services.segments.settings import SegmentsSettings
from tests.fakes import FakePublisher

KEYS = {"dpo": ["consent:write"], "marketer": ["segments:admin"]}
APPS = {
    "consent": (
        consent_app(ConsentSettings(api_keys=KEYS), FakePublisher()),
        "/v1/customers/c1/consent/marketing",
    ),
    "segments": (segments_app(SegmentsSettings(api_keys=KEYS), FakePublisher()), "/v1/segments"),
}


class Exchange:
    """One raw ASGI request: what the app asked to receive, and what it sent back."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks, self.received, self.sent = chunks, 0, list[Message]()

    async def receive(self) -> Message:
        self.received += 1
        chunk = self.chunks.pop(0) if self.chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(next(m["status"] for m in self.sent if m["type"] == "http.response.start"))


async def call(
    app: Any, path: str, headers: dict[str, str], chunks: list[bytes], method: str = "PUT"
) -> Exchange:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "scheme": "http",
        "root_path": "",
    }
    exchange = Exchange(chunks)
    await app(scope, exchange.receive, exchange.send)
    return exchange


@pytest.mark.parametrize("service", sorted(APPS))
async def test_a_200_mb_body_without_a_key_is_refused_unread(service: str) -> None:
    app, path = APPS[service]
    method = "PUT" if service == "consent" else "POST"
    headers = {"Content-Length": str(200 * 1024 * 1024), "Content-Type": "application/json"}
    exchange = await call(app, path, headers, [b"{" * 1024] * 5, method)
    assert (exchange.status, exchange.received) == (401, 0)


@pytest.mark.parametrize("service", sorted(APPS))
async def test_bad_json_without_a_key_is_401_not_422(service: str) -> None:
    app, path = APPS[service]
    method = "PUT" if service == "consent" else "POST"
    exchange = await call(app, path, {"Content-Type": "application/json"}, [b"{not json"], method)
    assert exchange.status == 401


async def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    app, path = APPS["consent"]
    headers = {"Authorization": "Bearer dpo", "Content-Length": str(10 * 1024 * 1024)}
    exchange = await call(app, path, headers, [b"x"])
    assert (exchange.status, exchange.received) == (413, 0)


async def test_a_body_without_a_length_is_cut_off_once_past_the_limit() -> None:
    app, path = APPS["consent"]
    headers = {"Authorization": "Bearer dpo", "Content-Type": "application/json"}
    exchange = await call(app, path, headers, [b" " * 16 * 1024] * 100)
    assert exchange.status == 413
    assert exchange.received <= 5  # 64 KiB is the default limit: stopped at the fifth chunk


async def test_an_unknown_key_and_a_wrong_scheme_are_401() -> None:
    app, path = APPS["consent"]
    for authorization in ("Bearer nope", "Basic bm9wZTo=", "Basic !!", "Digest dpo", "Bearer "):
        exchange = await call(app, path, {"Authorization": authorization}, [b"{}"])
        assert exchange.status == 401, authorization


async def test_basic_auth_with_the_key_as_user_name_is_the_key_as_segments_libraries_send_it() -> None:
    app, path = APPS["consent"]
    for user in (b"dpo:", b"dpo:any-password"):
        authorization = "Basic " + base64.b64encode(user).decode()
        exchange = await call(
            app, path, {"Authorization": authorization, "Content-Type": "application/json"}, [b"{}"]
        )
        assert exchange.status == 422, user  # past the key: the body is what is wrong


def test_requests_are_counted_by_route_template_and_status_never_by_path() -> None:
    app, path = APPS["consent"]
    asyncio.run(call(app, path, {"Authorization": "Bearer dpo"}, [b'{"status": "nope"}']))
    asyncio.run(call(app, path, {}, [b"{}"]))
    samples = [
        sample.labels
        for metric in REGISTRY.collect()
        if metric.name == "touchline_api_request_seconds"
        for sample in metric.samples
        if sample.name.endswith("_count") and sample.labels["service"] == "consent"
    ]
    routes = {(labels["route"], labels["status"]) for labels in samples}
    assert ("/v1/customers/{customer_id}/consent/{purpose}", "422") in routes
    assert ("-", "401") in routes  # refused at the door, before any route matched
    assert not [labels for labels in samples if "c1" in labels["route"]]
