"""HTTP edge of identity resolution: whose is an identifier, and why are a profile's identifiers together."""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, status
from pydantic import ConfigDict, Field

from services.identity.domain import split_profile
from services.identity.settings import IdentitySettings
from services.identity.store import IdentityStore
from shared.auth import Principal, require_scope
from shared.events import IdentityChangeKind, SplitRequested, WireModel
from shared.http import CustomerIdPath, ErrorBody, create_publishing_app, error_response, from_state
from shared.identities import CUSTOMER_ID, normalized
from shared.kafka import BrokerUnavailable, DurablePublisher, RecordPublisher
from shared.serialization import encode
from shared.topics import IDENTITY_INBOUND

# Who a person is, is as sensitive as what they did: the timeline's readers read identities too.
Reader = Annotated[Principal, Depends(require_scope("timeline:read"))]
# Undoing a merge changes whose history is whose: a data steward's call, not every writer's.
Steward = Annotated[Principal, Depends(require_scope("identities:admin"))]
Store = Annotated[IdentityStore, Depends(from_state("store"))]
Settings = Annotated[IdentitySettings, Depends(from_state("settings"))]
Publisher = Annotated[RecordPublisher, Depends(from_state("publisher"))]
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


class SplitRequest(WireModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={"examples": [{"kind": "loyalty_card", "value": "L-1"}]},
    )
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="Any kind but customer_id.")
    value: str = Field(min_length=1, max_length=256, description="Normalized as on entry.")


class SplitAccepted(WireModel):
    split_id: str
    profile_id: str = Field(description="The profile the identifier leaves.")
    split_off: str = Field(description="The profile it goes to, with the touches it decided.")
    requested_at: datetime


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


@router.post(
    "/v1/customers/{customer_id}/identities/split",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SplitAccepted,
    responses=ERRORS | {409: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def split_identity(
    customer_id: CustomerIdPath,
    body: SplitRequest,
    principal: Steward,
    store: Store,
    settings: Settings,
    publisher: Publisher,
) -> Any:
    """Undoes a wrong merge: the identifier leaves the profile for the one it would have made alone (the
    profile it came from, when it made one), and the touches it decided go with it, past ones included:
    they leave this profile's timeline, profile and segments and count for the other, under its own
    consent. A touch that also named a stronger identifier (a customer id, say) stays. Applied in order
    with the touches, once the resolver reaches it; `GET .../identities` then lists the split."""
    try:
        value = normalized(body.kind, body.value)
    except ValueError as error:
        return error_response(422, "invalid_identifier", f"{body.kind} {error}")
    identifier = (body.kind, value)
    profile = await store.survivor(customer_id)
    if await store.holder(*identifier) != profile:
        return _unknown(f"{body.kind} {value!r} on the profile {customer_id!r}")
    split_off = split_profile(profile, identifier)
    if split_off is None:
        reason = "a customer id names its profile" if body.kind == CUSTOMER_ID else "it made this profile"
        return error_response(
            409, "cannot_split", f"{body.kind} {value!r} cannot leave {profile!r}: {reason}"
        )
    requested_at = datetime.now(UTC)
    request = SplitRequested(
        split_id=f"split-{uuid.uuid4().hex}",
        customer_id=profile,
        identifier_kind=body.kind,
        identifier_value=value,
        requested_at=requested_at,
        source=principal.source,
    )
    try:
        await publisher.publish(settings.topic(IDENTITY_INBOUND), [(profile.encode(), encode(request))])
    except BrokerUnavailable as unavailable:
        return error_response(
            503, "broker_unavailable", f"{unavailable}; retry", headers={"Retry-After": "5"}
        )
    return SplitAccepted(
        split_id=request.split_id, profile_id=profile, split_off=split_off, requested_at=requested_at
    )


def create_app(settings: IdentitySettings, publisher: RecordPublisher | None = None) -> FastAPI:
    return create_publishing_app(
        settings,
        "Touchline identity",
        "Which profile an identifier belongs to, and why; splitting a wrong merge."
        " Authenticate: `Authorization: Bearer <key>`.",
        router,
        IdentityStore,
        publisher or DurablePublisher(settings, settings.identity_publish_timeout_seconds),
    )
