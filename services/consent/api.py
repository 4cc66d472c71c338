"""HTTP edge of consent: record changes and erasures into the customer log, read status and audit trail."""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, status
from pydantic import BaseModel, ConfigDict

from services.consent.domain import RecordedChange, consent_change, current_consent, erasure_changes
from services.consent.settings import ConsentSettings
from services.consent.store import ConsentStore
from shared.auth import Principal, require_scope
from shared.cursors import BIGINT_POSITION, decode_cursor, encode_cursor
from shared.events import ConsentChange, ConsentStatus, ErasureRequested, Purpose
from shared.http import (
    CustomerIdPath,
    ErrorBody,
    create_publishing_app,
    error_response,
    from_state,
    invalid_parameter,
)
from shared.kafka import BrokerUnavailable, DurablePublisher, RecordPublisher
from shared.serialization import encode
from shared.topics import CUSTOMER_LOG, IDENTITY_INBOUND

Writer = Annotated[Principal, Depends(require_scope("consent:write"))]
Reader = Annotated[Principal, Depends(require_scope("consent:read"))]
Settings = Annotated[ConsentSettings, Depends(from_state("settings"))]
Publisher = Annotated[RecordPublisher, Depends(from_state("publisher"))]
Store = Annotated[ConsentStore, Depends(from_state("store"))]


class ConsentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "denied"}]})
    status: ConsentStatus


class ChangeView(BaseModel):
    change_id: str
    purpose: Purpose
    status: ConsentStatus
    changed_at: datetime
    source: str
    erasure: bool = False


class PurposeView(BaseModel):
    status: ConsentStatus
    origin: Literal["default", "explicit"]
    changed_at: datetime | None = None
    source: str | None = None
    change_id: str | None = None


class CustomerConsent(BaseModel):
    customer_id: str
    purposes: dict[Purpose, PurposeView]


class HistoryPage(BaseModel):
    changes: list[ChangeView]
    next_cursor: str | None


class ErasureAccepted(BaseModel):
    erasure_id: str
    customer_id: str
    purposes: list[Purpose]
    requested_at: datetime


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 422)}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "Kafka unavailable; retry."}
}

router = APIRouter(prefix="/v1/customers/{customer_id}", tags=["consent"])


def _view(change: RecordedChange | ConsentChange) -> ChangeView:
    return ChangeView(
        change_id=change.change_id,
        purpose=change.purpose,
        status=change.status,
        changed_at=change.changed_at,
        source=change.source,
        erasure=change.erasure,
    )


async def _publish(
    publisher: RecordPublisher, settings: ConsentSettings, changes: list[ConsentChange]
) -> Any:
    """Appends `changes` to the customer log; None once durable, else the 503 response to return."""
    return await _publish_to(publisher, settings.topic(CUSTOMER_LOG), changes)


async def _publish_to(
    publisher: RecordPublisher, topic: str, records: Sequence[ConsentChange | ErasureRequested]
) -> Any:
    try:
        await publisher.publish(topic, [(record.customer_id.encode(), encode(record)) for record in records])
    except BrokerUnavailable as unavailable:
        return error_response(
            503, "broker_unavailable", f"{unavailable}; retry", headers={"Retry-After": "5"}
        )
    return None


@router.put(
    "/consent/{purpose}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ChangeView,
    responses=ERRORS | UNAVAILABLE,
)
async def change_consent(
    request: Request,
    customer_id: CustomerIdPath,
    purpose: Purpose,
    update: ConsentUpdate,
    principal: Writer,
    settings: Settings,
    publisher: Publisher,
) -> Any:
    """Grant or deny one purpose. 202 once the change is durable in the customer log, in order with the
    customer's touches: every touch logged after it is judged by it. For the id of a profile an identity
    merge absorbed, the change is the person's: it is recorded for the profile that absorbed it."""
    customer_id = await _person(request, customer_id)
    change = consent_change(customer_id, purpose, update.status, datetime.now(UTC), principal.source)
    return await _publish(publisher, settings, [change]) or _view(change)


@router.get("/consent", response_model=CustomerConsent, response_model_exclude_none=True, responses=ERRORS)
async def read_consent(customer_id: CustomerIdPath, _: Reader, settings: Settings, store: Store) -> Any:
    """Every purpose's current status, and whether it is the default or an explicit change (when, by whom).
    An absorbed profile's id answers with the consent of the profile that absorbed it."""
    customer_id = await store.survivor(customer_id)
    current = current_consent(await store.latest_per_purpose(customer_id), settings.default_consent())
    purposes = {
        purpose: PurposeView(
            status=consent.status,
            origin=consent.origin,
            **(
                {
                    "changed_at": consent.change.changed_at,
                    "source": consent.change.source,
                    "change_id": consent.change.change_id,
                }
                if consent.change
                else {}
            ),
        )
        for purpose, consent in current.items()
    }
    return CustomerConsent(customer_id=customer_id, purposes=purposes)


async def _person(request: Request, customer_id: str) -> str:
    """Read once the request is valid: a malformed one is answered without the database."""
    store: ConsentStore = request.app.state.store
    return await store.survivor(customer_id)


def _offset_before(cursor: str) -> int:
    """The log offset a history cursor points below; ValueError for anything this API did not hand out."""
    (offset,) = decode_cursor(cursor, BIGINT_POSITION)
    return offset


@router.get("/consent/history", response_model=HistoryPage, responses=ERRORS)
async def consent_history(
    customer_id: CustomerIdPath,
    _: Reader,
    store: Store,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> Any:
    """The audit trail, newest first, including erasures."""
    try:
        before = _offset_before(cursor) if cursor else None
    except ValueError as error:
        return invalid_parameter("cursor", str(error))
    changes = await store.history(await store.survivor(customer_id), limit + 1, before)
    next_cursor = encode_cursor(changes[limit - 1].log_offset) if len(changes) > limit else None
    return HistoryPage(changes=[_view(change) for change in changes[:limit]], next_cursor=next_cursor)


@router.post(
    "/erasure",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ErasureAccepted,
    responses=ERRORS | UNAVAILABLE,
)
async def erase_customer(
    request: Request, customer_id: CustomerIdPath, principal: Writer, settings: Settings, publisher: Publisher
) -> Any:
    """The right to be forgotten: every purpose is denied and every projection deletes the customer, the
    profiles an identity merge joined to them included. The audit trail keeps that, and when."""
    customer_id = await _person(request, customer_id)
    requested_at = datetime.now(UTC)
    erasure_id, changes = erasure_changes(customer_id, requested_at, principal.source)
    request_record = ErasureRequested(
        erasure_id=erasure_id, customer_id=customer_id, requested_at=requested_at, source=principal.source
    )
    refused = await _publish(publisher, settings, changes) or await _publish_to(
        publisher, settings.topic(IDENTITY_INBOUND), [request_record]
    )
    return refused or ErasureAccepted(
        erasure_id=erasure_id,
        customer_id=customer_id,
        purposes=[change.purpose for change in changes],
        requested_at=requested_at,
    )


def create_app(settings: ConsentSettings, publisher: RecordPublisher | None = None) -> FastAPI:
    return create_publishing_app(
        settings,
        "Touchline consent",
        "Consent per customer and purpose (`profiling`, `marketing`), erasure, audit trail.",
        router,
        ConsentStore,
        publisher or DurablePublisher(settings, settings.consent_publish_timeout_seconds),
    )
