"""What every Touchline HTTP API shares: one error shape, health endpoints and /metrics."""

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any, Protocol

import asyncpg
from fastapi import APIRouter, FastAPI, Path, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.auth import principals
from shared.db import create_pool
from shared.errors import Problem, Refusal, Rejected, problems_from
from shared.front_door import FrontDoor, KeyTable, Refused
from shared.kafka import RecordPublisher
from shared.metrics import render_metrics
from shared.settings import TouchlineSettings

# Ids in paths (customers, segments) are validated as the wire contract's Identifier; every customer-scoped
# route takes the same one.
IdentifierPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
CustomerIdPath = IdentifierPath
ReadinessCheck = Callable[[], Awaitable[bool]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class ErrorBody(BaseModel):
    error: str
    message: str
    problems: list[Problem] = []


# What any route can answer whatever it does, as the front door and FastAPI's body parsing answer it.
FRONT_DOOR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not valid JSON."},
    401: {"model": ErrorBody, "description": "No API key, or an unknown one."},
    403: {"model": ErrorBody, "description": "The key lacks the route's scope."},
    413: {"model": ErrorBody, "description": "The body is larger than the route accepts."},
    422: {"model": ErrorBody, "description": "A parameter or the body is invalid; each problem is named."},
    503: {
        "model": ErrorBody,
        "description": "The database or the broker is unavailable; retry after Retry-After.",
    },
}


def error_response(
    status_code: int,
    error: str,
    message: str,
    problems: Sequence[Problem] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=error, message=message, problems=list(problems))
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code, headers=headers)


# The one place a domain refusal becomes an HTTP status.
STATUS_OF_REFUSAL = {
    Refusal.MALFORMED: status.HTTP_400_BAD_REQUEST,
    Refusal.INVALID: status.HTTP_422_UNPROCESSABLE_CONTENT,
    Refusal.TOO_LARGE: status.HTTP_413_CONTENT_TOO_LARGE,
    Refusal.UNSUPPORTED_MEDIA: status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
}


def rejected_response(rejected: Rejected) -> JSONResponse:
    return error_response(
        STATUS_OF_REFUSAL[rejected.refusal], rejected.error, rejected.message, rejected.problems
    )


def invalid_parameter(field: str, reason: str) -> JSONResponse:
    """The 422 for a parameter the route checks itself (a cursor, say), shaped like pydantic's."""
    return error_response(
        422, "invalid_request", "the request is invalid", [Problem(field=field, reason=reason)]
    )


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    default = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
    error = exc.error if isinstance(exc, Refused) else default
    return error_response(exc.status_code, error, str(exc.detail), headers=getattr(exc, "headers", None))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return http_error_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # FastAPI prefixes locations with where the value came from (path, query, body): keep it out of field.
    problems = problems_from(exc.errors(), skip=1)
    return error_response(
        status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid_request", "the request is invalid", problems
    )


def install_common(app: FastAPI, readiness: ReadinessCheck) -> None:
    """Error handlers, /healthz, /readyz and /metrics: the same on every service."""
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.state.readiness = readiness
    app.include_router(_health)


_health = APIRouter(tags=["operations"])


@_health.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@_health.get("/readyz", responses={503: {"model": ErrorBody}})
async def readyz(request: Request) -> Any:
    """The service can do its work: its broker or database answers."""
    if await request.app.state.readiness():
        return {"status": "ready"}
    return error_response(status.HTTP_503_SERVICE_UNAVAILABLE, "not_ready", "a dependency is unreachable")


@_health.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition of this process's metrics."""
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)


def from_state(attribute: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency handing a route what its app was wired with at start-up (settings, store, ...).

    Async, as every dependency here: FastAPI runs a plain function in a worker thread, and that hand-off
    cost more CPU than the rest of a consent request."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, attribute)

    return dependency


def create_service_app(
    settings: TouchlineSettings,
    title: str,
    description: str,
    router: APIRouter,
    lifespan: Lifespan,
    readiness: ReadinessCheck,
    body_limits: Mapping[str, int] | None = None,
) -> FastAPI:
    """A service's FastAPI app: the front door (key, then body size), the shared error shape, health
    endpoints and /metrics. `body_limits` gives a path its own limit (TOUCHLINE_HTTP_MAX_BODY_BYTES else)."""
    # One schema per model for requests and responses: what an API answers reads back as it was written
    # (a rule's serializer drops empty parts), and separate output schemas would document any object.
    app = FastAPI(
        title=title,
        version="1",
        description=description,
        lifespan=lifespan,
        separate_input_output_schemas=False,
    )
    app.state.settings = settings
    keys = KeyTable(principals(settings.api_keys))
    app.add_middleware(
        FrontDoor,
        keys=keys,
        refusal=http_error_response,
        default_limit=settings.http_max_body_bytes,
        service=title.removeprefix("Touchline ").lower(),  # titles read "Touchline <service>"
        limits=body_limits,
    )
    install_common(app, readiness)
    app.include_router(router, responses=FRONT_DOOR_RESPONSES)
    return app


class ReadyStore(Protocol):
    async def ready(self) -> bool: ...


def create_publishing_app(
    settings: TouchlineSettings,
    title: str,
    description: str,
    router: APIRouter,
    store: Callable[[asyncpg.Pool], ReadyStore],
    publisher: RecordPublisher,
) -> FastAPI:
    """A service app that writes through `publisher` and reads through `store` on its own pool: both
    live as long as the app, and /readyz asks both."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.pg_dsn.get_secret_value())
        app.state.store = store(pool)
        try:
            yield
        finally:
            await publisher.close()
            await pool.close()

    async def ready() -> bool:
        return await publisher.ready() and await app.state.store.ready()

    app = create_service_app(settings, title, description, router, lifespan, ready)
    app.state.publisher = publisher
    return app
