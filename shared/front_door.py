"""What every API does around every request: the key and the body's size before a byte of the body is
read, and one answer for every error a route lets escape.

An ASGI middleware, so a request without a known key is refused (401) before the body is received, and a
body longer than its route allows is refused (413) as soon as Content-Length says so, or, without one, as
soon as the bytes received pass the limit. Scopes are checked per route (`shared.auth.require_scope`),
against the principal found here. An error escaping a route is classified as the stream processors
classify theirs (shared/failures.py): a database or broker away is 503 with Retry-After; a value the
database refuses is 422; anything else is a bug, logged with its traceback, and a 500 in the error shape.
"""

import base64
import binascii
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import Principal, authenticate
from shared.failures import Failure, classify
from shared.metrics import API_REQUEST_SECONDS

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = "5"

# Routes anyone may call: liveness, readiness, metrics and the API's own documentation.
PUBLIC = frozenset(
    {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


class Refused(HTTPException):
    """An HTTP error with its own machine-readable code (the error shape's `error`)."""

    def __init__(self, status_code: int, error: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code, message, headers)
        self.error = error


class KeyTable:
    """The API keys of TOUCHLINE_API_KEYS with their principals (see shared.auth.principals)."""

    def __init__(self, table: list[tuple[bytes, Principal]]) -> None:
        self.table = table

    def principal(self, authorization: str | None) -> Principal:
        """The key's principal, or the 401 saying what is wrong with the Authorization header."""
        key = _presented_key(authorization)
        if not key:
            message = "missing API key: send 'Authorization: Bearer <key>' (or Basic, the key as user name)"
            raise Refused(401, "unauthorized", message, UNAUTHORIZED_HEADERS)
        principal = authenticate(key, self.table)
        if principal is None:
            raise Refused(401, "unauthorized", "unknown API key", UNAUTHORIZED_HEADERS)
        return principal


def _presented_key(authorization: str | None) -> str:
    """The key of a Bearer header, or the user name of a Basic one: Segment's libraries send their
    write key so, and a Touchline key serves as one."""
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return ""


class FrontDoor:
    """`limits` maps a path to its body limit in bytes; `refusal` shapes a refusal as the app's errors;
    `service` names the API in its request metrics."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyTable,
        refusal: Callable[[HTTPException], Response],
        default_limit: int,
        service: str,
        limits: Mapping[str, int] | None = None,
    ) -> None:
        self.app, self.keys, self.refusal, self.service = app, keys, refusal, service
        self.default_limit, self.limits = default_limit, limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC:
            await self.app(scope, receive, send)
            return
        began, statuses = time.perf_counter(), list[int]()  # the status, once the response has begun

        async def send_noting_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            await send(message)

        try:
            await self._serve(scope, receive, send_noting_status, responded=lambda: bool(statuses))
        finally:
            route = getattr(scope.get("route"), "path", "-")
            status = str(statuses[0]) if statuses else "500"
            API_REQUEST_SECONDS.labels(self.service, route, status).observe(time.perf_counter() - began)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, responded: Callable[[], bool]) -> None:
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
        }
        try:
            principal = self.keys.principal(headers.get("authorization"))
            limit = self.limits.get(scope["path"], self.default_limit)
            _check_declared(headers.get("content-length"), limit)
        except HTTPException as refused:
            await self.refusal(refused)(scope, _no_body, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        try:
            await self.app(scope, _capped(receive, limit), send)
        except Exception as error:
            if responded():
                raise  # the client has a status already; the connection is all that is left to end
            await self.refusal(_answer_for(error, scope))(scope, _no_body, send)


def _answer_for(error: Exception, scope: Scope) -> Refused:
    # Logged by route template, never by path: a path holds a customer id.
    route = getattr(scope.get("route"), "path", "-")
    failure = classify(error)
    if failure is Failure.UNAVAILABLE:
        log.warning("a dependency is unavailable", extra={"route": route, "error": type(error).__name__})
        message = "the database or the broker is unavailable; retry"
        return Refused(503, "unavailable", message, {"Retry-After": RETRY_AFTER_SECONDS})
    if failure is Failure.DATA:
        return Refused(422, "invalid_request", "a value in the request cannot be stored or compared")
    log.error("unexpected error", exc_info=error, extra={"route": route})
    return Refused(500, "internal_error", "an unexpected error; it has been logged")


def _check_declared(content_length: str | None, limit: int) -> None:
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        message = f"the body has {content_length} bytes; at most {limit} are accepted"
        raise Refused(413, "body_too_large", message)


def _capped(receive: Receive, limit: int) -> Receive:
    received = 0

    async def receive_capped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise Refused(413, "body_too_large", f"the body passes {limit} bytes, the most accepted")
        return message

    return receive_capped


async def _no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}
