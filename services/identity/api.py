"""HTTP edge of identity resolution: whose is an identifier, and why are a profile's identifiers together."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query

from services.identity.settings import IdentitySettings
from services.identity.store import IdentityStore
from shared.auth import Principal, require_scope
from shared.db import create_pool
from shared.events import IdentityChangeKind, WireModel
from shared.http import CustomerIdPath, ErrorBody, create_service_app, error_response, from_state
from shared.identities import normalized

# Who a person is, is as sensitive as what they did: the timeline's readers read identities too.
Reader = Annotated[Principal, Depends(require_scope("timeline:read"))]
Store = Annotated[IdentityStore, Depends(from_state("store"))]
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 422)}
KindPath = Annotated[
    str, Path(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="customer_id, email, phone, ...")
]
ValuePath = Annotated[str, Path(min_length=1, max_length=256, description="Normalized as on entry.")]


class LinkedIdentifier(WireModel):
    kind: str
    value: str
    linked_at: datetime
    caused_by: str


class IdentityEntry(WireModel):
    change: IdentityChangeKind
    profile_id: str
    other_profile_id: str | None
    kind: str
    value: str
    reason: str | None
    caused_by: str
    at: datetime


class ProfileIdentity(WireModel):
    profile_id: str
    identifiers: list[LinkedIdentifier]
    absorbed: list[str]
    history: list[IdentityEntry]


class IdentifierOwner(WireModel):
    profile_id: str
    identifiers: list[LinkedIdentifier]


router = APIRouter(tags=["identity"])


def _unknown(what: str) -> Any:
    return error_response(404, "unknown_identity", f"no profile holds {what}")


async def _profile(store: IdentityStore, profile: str, history_limit: int) -> ProfileIdentity | None:
    found = await store.identities(profile, history_limit)
    if found is None:
        return None
    return ProfileIdentity(
        profile_id=found.profile_id,
        identifiers=[LinkedIdentifier(**dict(row)) for row in found.identifiers],
        absorbed=found.absorbed,
        history=[
            IdentityEntry(**{k: v for k, v in dict(row).items() if k != "log_offset"})
            for row in found.history
        ],
    )


@router.get("/v1/identities/{kind}/{value}", response_model=IdentifierOwner, responses=ERRORS)
async def identity_owner(kind: KindPath, value: ValuePath, _: Reader, store: Store) -> Any:
    """The profile an identifier belongs to, and every identifier it holds. The value is normalized
    first, so `Ada@Example.com` finds `ada@example.com`."""
    try:
        value = normalized(kind, value)
    except ValueError as error:
        return error_response(422, "invalid_identifier", f"{kind} {error}")
    holder = await store.holder(kind, value)
    found = holder and await _profile(store, holder, 0)
    if not found:
        return _unknown(f"{kind} {value!r}")
    return IdentifierOwner(profile_id=found.profile_id, identifiers=found.identifiers)


@router.get("/v1/customers/{customer_id}/identities", response_model=ProfileIdentity, responses=ERRORS)
async def profile_identities(
    customer_id: CustomerIdPath,
    _: Reader,
    store: Store,
    history: Annotated[int, Query(ge=0, le=1000, description="Newest changes to list.")] = 100,
) -> Any:
    """A profile's identifiers, the profiles merged into it, and its links, merges and refused links
    with the touch that caused each: why these identifiers are (or are not) together. An absorbed
    profile's id answers for the profile that absorbed it."""
    found = await _profile(store, customer_id, history)
    return found or _unknown(f"the id {customer_id!r}")


def create_app(settings: IdentitySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.pg_dsn.get_secret_value())
        app.state.store = IdentityStore(pool)
        try:
            yield
        finally:
            await pool.close()

    async def ready() -> bool:
        store: IdentityStore = app.state.store
        return await store.ready()

    app = create_service_app(
        settings,
        "Touchline identity",
        "Which profile an identifier belongs to, and why. Authenticate: `Authorization: Bearer <key>`.",
        router,
        lifespan,
        ready,
    )
    return app
