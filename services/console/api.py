"""The Customer 360 console: server-rendered pages over Touchline's public APIs, for front-office
staff, marketers and data protection officers. A thin edge: the rules are in domain.py, the API calls
in store.py; every call carries the signed-in user's own key, so each page shows what its scopes allow."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware

from services.console.domain import (
    SEARCH_KINDS,
    Session,
    Sessions,
    activity,
    applied_change,
    csrf_ok,
    describe_rule,
    empties_timeline,
    new_session,
    search_kind,
    withheld_profile,
)
from services.console.settings import ConsoleSettings
from services.console.store import ApiRefusal, Json, Touchline, touchline
from shared.auth import authenticate, principals
from shared.errors import problems_from
from shared.http import from_state, install_common
from shared.metrics import API_REQUEST_SECONDS

HERE = Path(__file__).parent
COOKIE = "touchline_console"
CHART_DAYS = 30
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["rule"] = describe_rule
router = APIRouter()


class SignInRequired(Exception):
    pass


def current_session(request: Request) -> Session:
    sessions: Sessions = request.app.state.sessions
    session = sessions.get(request.cookies.get(COOKIE), datetime.now(UTC))
    if session is None:
        raise SignInRequired
    return session


SessionDep = Annotated[Session, Depends(current_session)]


Api = Annotated[Touchline, Depends(from_state("touchline"))]


def page(
    request: Request, name: str, session: Session | None, status_code: int = 200, **context: Any
) -> Response:
    return templates.TemplateResponse(
        request, name, {"session": session, "kinds": SEARCH_KINDS, **context}, status_code=status_code
    )


def _csrf(session: Session, token: str | None) -> None:
    if not csrf_ok(session, token):
        raise ApiRefusal(403, "the form is out of date (CSRF check failed): reload the page and try again")


@router.get("/signin", response_class=HTMLResponse)
async def sign_in_form(request: Request) -> Response:
    return page(request, "signin.html", None)


@router.post("/signin", response_class=HTMLResponse)
async def sign_in(request: Request, key: Annotated[str, Form(max_length=256)]) -> Response:
    settings: ConsoleSettings = request.app.state.settings
    principal = authenticate(key.strip(), principals(settings.api_keys))
    if principal is None:
        return page(request, "signin.html", None, 401, error="That API key is not known.")
    session = new_session(
        key.strip(), principal.source, principal.scopes, datetime.now(UTC), settings.console_session_minutes
    )
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        request.app.state.sessions.open(session),
        httponly=True,
        samesite="strict",
        secure=settings.console_secure_cookies,
        max_age=settings.console_session_minutes * 60,
    )
    return response


@router.post("/signout")
async def sign_out(request: Request, session: SessionDep, csrf: Annotated[str, Form()]) -> Response:
    _csrf(session, csrf)
    request.app.state.sessions.close(request.cookies.get(COOKIE))
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, session: SessionDep) -> Response:
    return page(request, "find.html", session)


@router.get("/find", response_class=HTMLResponse)
async def find(
    request: Request,
    session: SessionDep,
    touchline: Api,
    q: Annotated[str, Query(max_length=256)] = "",
    kind: str | None = None,
) -> Response:
    query = q.strip()
    if not query:
        return page(request, "find.html", session)
    chosen = search_kind(kind, query)
    holder = await touchline.holder(session.key, chosen, query)
    if holder is None:
        return page(request, "find.html", session, 404, query=query, kind=chosen, not_found=True)
    return RedirectResponse(f"/customers/{quote(holder, safe='')}", status_code=303)


def _filters(
    channels: list[str] | None, types: list[str] | None, since: str | None, until: str | None
) -> dict[str, Any]:
    return {
        "channels": channels or [],
        "types": types or [],
        "since": since or "",
        "until": until or "",
    }


def _api_query(filters: dict[str, Any]) -> dict[str, Any]:
    """The timeline API's query for the page's filters (dates are whole days, until inclusive)."""
    query: dict[str, Any] = {"channels": filters["channels"], "types": filters["types"]}
    if filters["since"]:
        query["since"] = f"{filters['since']}T00:00:00Z"
    if filters["until"]:
        until = datetime.fromisoformat(filters["until"]) + timedelta(days=1)
        query["until"] = until.strftime("%Y-%m-%dT00:00:00Z")
    return query


Multi = Annotated[list[str] | None, Query()]


@router.get("/customers/{customer_id}", response_class=HTMLResponse)
async def customer(
    request: Request,
    customer_id: str,
    session: SessionDep,
    touchline: Api,
    channels: Multi = None,
    types: Multi = None,
    since: str | None = None,
    until: str | None = None,
) -> Response:
    profile = await touchline.profile(session.key, customer_id)
    if profile is None and session.may("consent:read"):
        profile = withheld_profile(customer_id, await touchline.consent(session.key, customer_id))
    if profile is None:
        return page(request, "find.html", session, 404, query=customer_id, kind="customer_id", not_found=True)
    filters = _filters(channels, types, since, until)
    first = await touchline.timeline(session.key, customer_id, limit=25, **_api_query(filters))
    today = datetime.now(UTC).date()
    recent = await touchline.timeline(
        session.key, customer_id, limit=500, since=f"{today - timedelta(days=CHART_DAYS - 1)}T00:00:00Z"
    )
    return page(
        request,
        "customer.html",
        session,
        customer_id=customer_id,
        profile=profile,
        identities=await touchline.identities(session.key, customer_id),
        events=first["events"],
        next_cursor=first["next_cursor"],
        filters=filters,
        chart=activity(recent["events"], CHART_DAYS, today),
    )


@router.get("/customers/{customer_id}/rows", response_class=HTMLResponse)
async def timeline_rows(
    request: Request,
    customer_id: str,
    session: SessionDep,
    touchline: Api,
    cursor: str | None = None,
    channels: Multi = None,
    types: Multi = None,
    since: str | None = None,
    until: str | None = None,
) -> Response:
    """A page of timeline rows, for scrolling on (with `cursor`) and for the live check (without)."""
    filters = _filters(channels, types, since, until)
    found = await touchline.timeline(session.key, customer_id, limit=25, cursor=cursor, **_api_query(filters))
    return page(request, "rows.html", session, events=found["events"], next_cursor=found["next_cursor"])


@router.get("/customers/{customer_id}/consent", response_class=HTMLResponse)
async def consent_page(
    request: Request,
    customer_id: str,
    session: SessionDep,
    touchline: Api,
    change: str | None = None,
    what: str | None = None,
) -> Response:
    """Consent, its history and the forms. After a change (`change`, `what`) the page says whether it has
    been applied yet (by the consent filter, and for a denial the timeline needs, by the timeline deleting
    the customer's touches); the page's script refreshes it until it has."""
    consent = await touchline.consent(session.key, customer_id)
    history = await touchline.consent_history(session.key, customer_id)
    applied = applied_change(history["changes"], change) if change else None
    timeline_pending = (
        applied is not None
        and empties_timeline(applied)
        and session.may("timeline:read")
        and bool((await touchline.timeline(session.key, customer_id, limit=1))["events"])
    )
    return page(
        request,
        "consent.html",
        session,
        customer_id=customer_id,
        consent=consent,
        history=history,
        change=change,
        what=what,
        applied=applied,
        timeline_pending=timeline_pending,
    )


def _consent_url(customer_id: str, change_id: str, what: str) -> str:
    return f"/customers/{quote(customer_id, safe='')}/consent?change={quote(change_id)}&what={quote(what)}"


@router.post("/customers/{customer_id}/consent", response_class=HTMLResponse)
async def record_consent(
    request: Request,
    customer_id: str,
    session: SessionDep,
    touchline: Api,
    csrf: Annotated[str, Form()],
    purpose: Annotated[str, Form()],
    status: Annotated[str, Form()],
    confirm: Annotated[str | None, Form()] = None,
) -> Response:
    _csrf(session, csrf)
    if confirm != "yes":
        raise ApiRefusal(422, "tick the confirmation to record the change")
    recorded = await touchline.set_consent(session.key, customer_id, purpose, status)
    change_id = str((recorded or {}).get("change_id", ""))
    return RedirectResponse(_consent_url(customer_id, change_id, f"{purpose} {status}"), status_code=303)


@router.post("/customers/{customer_id}/erasure", response_class=HTMLResponse)
async def erase(
    request: Request,
    customer_id: str,
    session: SessionDep,
    touchline: Api,
    csrf: Annotated[str, Form()],
    confirm: Annotated[str | None, Form()] = None,
) -> Response:
    _csrf(session, csrf)
    if confirm != customer_id:
        raise ApiRefusal(422, "type the customer id to confirm the erasure")
    accepted = await touchline.erase(session.key, customer_id)
    erasure_id = str((accepted or {}).get("erasure_id", ""))
    return RedirectResponse(_consent_url(customer_id, erasure_id, "erasure"), status_code=303)


@router.get("/segments", response_class=HTMLResponse)
async def segments(request: Request, session: SessionDep, touchline: Api) -> Response:
    """Every segment with its rule in words and, for a key that may read membership, its counts."""
    defined = await touchline.segments(session.key)
    stats: list[Json | None] = [None] * len(defined)
    if session.may("segments:read"):
        stats = list(await asyncio.gather(*(touchline.stats(session.key, s["id"]) for s in defined)))
    return page(request, "segments.html", session, segments=list(zip(defined, stats, strict=True)))


@router.get("/segments/{segment_id}", response_class=HTMLResponse)
async def segment(
    request: Request, segment_id: str, session: SessionDep, touchline: Api, cursor: str | None = None
) -> Response:
    definition = await touchline.segment(session.key, segment_id) if session.may("segments:admin") else None
    stats = await touchline.stats(session.key, segment_id)
    return page(
        request,
        "segment.html",
        session,
        segment_id=segment_id,
        definition=definition,
        stats=stats,
        changes=await touchline.changes(session.key, segment_id),
        members=await touchline.members(session.key, segment_id, cursor),
        cursor=cursor,
    )


@router.get("/segments/{segment_id}/live", response_class=HTMLResponse)
async def segment_live(request: Request, segment_id: str, session: SessionDep, touchline: Api) -> Response:
    """Counts and the newest changes, for the page's live check."""
    stats = await touchline.stats(session.key, segment_id)
    changes = await touchline.changes(session.key, segment_id)
    return page(request, "segment_live.html", session, stats=stats, changes=changes)


class PageEdge(BaseHTTPMiddleware):
    """Every page timed as the APIs time their routes; nothing fetched from outside the machine, nothing
    framing the console."""

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        began = time.perf_counter()
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
            " frame-ancestors 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        route = getattr(request.scope.get("route"), "path", "-")
        API_REQUEST_SECONDS.labels("console", route, str(response.status_code)).observe(
            time.perf_counter() - began
        )
        return response


def create_app(
    settings: ConsoleSettings, connect: Callable[[], AbstractAsyncContextManager[Touchline]] | None = None
) -> FastAPI:
    """`connect` opens the API clients; by default over HTTP to the URLs in `settings`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (connect or (lambda: touchline(settings)))() as client:
            app.state.touchline = client
            yield

    app = FastAPI(
        title="Touchline console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.settings, app.state.sessions = settings, Sessions()
    app.add_middleware(PageEdge)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)
    # /healthz, /readyz (every API the console calls is ready) and /metrics as on every service; errors
    # below are pages, not the APIs' JSON.
    install_common(app, lambda: app.state.touchline.ready())

    def error_page(request: Request, status_code: int, message: str) -> Response:
        session = app.state.sessions.get(request.cookies.get(COOKIE), datetime.now(UTC))
        return page(request, "error.html", session, status_code, message=message, status=status_code)

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, _: SignInRequired) -> Response:
        if request.headers.get("x-console-fragment"):
            return Response(status_code=401)
        return RedirectResponse("/signin", status_code=303)

    @app.exception_handler(ApiRefusal)
    async def refused(request: Request, refusal: ApiRefusal) -> Response:
        return error_page(request, refusal.status, refusal.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> Response:
        problems = "; ".join(f"{p.field}: {p.reason}" for p in problems_from(error.errors(), skip=1))
        return error_page(request, 422, f"the form or address is invalid ({problems})")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        return error_page(request, error.status_code, str(error.detail))

    return app
