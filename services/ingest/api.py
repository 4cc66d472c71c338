"""HTTP edge of ingest: channel systems POST batches of touches; 202 means durable in Kafka."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, status
from pydantic import BaseModel, Field

from services.ingest.domain import parse_batch, routed_records
from services.ingest.metrics import (
    BATCH_SIZE,
    EVENTS_ACCEPTED,
    EVENTS_REJECTED,
    PRODUCE_SECONDS,
    REQUEST_SECONDS,
)
from services.ingest.settings import IngestSettings
from services.ingest.tracking import (
    CALLS,
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    Call,
    parse_batch_call,
    parse_call,
)
from shared.auth import Principal, require_scope
from shared.errors import Problem, Refusal, Rejected
from shared.events import TouchEventIn
from shared.http import ErrorBody, create_service_app, error_response, from_state, rejected_response
from shared.kafka import BrokerUnavailable, DurablePublisher, RecordPublisher
from shared.topics import CUSTOMER_LOG, IDENTITY_INBOUND

RETRY_AFTER_SECONDS = "5"


class Accepted(BaseModel):
    accepted: int


def _batch_schema(max_batch: int) -> dict[str, Any]:
    event = TouchEventIn.model_json_schema()
    event.pop("$defs", None)
    event["properties"]["properties"] = {
        "type": "object",
        "additionalProperties": True,
        "description": "Any JSON object, at most 32 KiB serialized: amounts, campaign, page, ...",
    }
    return {"type": "array", "minItems": 1, "maxItems": max_batch, "items": event}


EXAMPLE_BATCH = [
    {
        "event_id": "shop-order-88121",
        "customer_id": "cust-00042",
        "type": "purchase",
        "channel": "web",
        "occurred_at": "2026-11-22T09:14:03Z",
        "properties": {"amount": 129.90, "currency": "EUR", "items": 2},
    },
    {
        "event_id": "esp-open-5521-cust-00042",
        "customer_id": "cust-00042",
        "type": "email.opened",
        "channel": "email",
        "occurred_at": "2026-11-22T08:02:11+01:00",
        "properties": {"campaign": "winter-sale"},
    },
]

Writer = Annotated[Principal, Depends(require_scope("events:write"))]


Settings = Annotated[IngestSettings, Depends(from_state("settings"))]
Publisher = Annotated[RecordPublisher, Depends(from_state("publisher"))]

router = APIRouter(prefix="/v1", tags=["events"])


async def _read_json(request: Request) -> bytes:
    """The body (its size is capped by the front door, see create_app), once it is declared JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        message = "send the batch as Content-Type: application/json"
        raise Rejected(Refusal.UNSUPPORTED_MEDIA, "unsupported_media_type", message)
    return await request.body()


async def _publish(
    request: Request, principal: Principal, settings: IngestSettings, publisher: RecordPublisher
) -> int:
    body = await _read_json(request)
    received_at = datetime.now(UTC)
    events = parse_batch(body, received_at, settings.policy())
    await _publish_touches(events, received_at, principal, settings, publisher)
    return len(events)


async def _publish_touches(
    events: list[TouchEventIn],
    received_at: datetime,
    principal: Principal,
    settings: IngestSettings,
    publisher: RecordPublisher,
) -> None:
    routed = routed_records(events, received_at, principal.source)
    started = time.perf_counter()
    await asyncio.gather(
        *(
            publisher.publish(settings.topic(topic), records)
            for topic, records in (
                (CUSTOMER_LOG, routed.customer_log),
                (IDENTITY_INBOUND, routed.identity_inbound),
            )
            if records
        )
    )
    PRODUCE_SECONDS.observe(time.perf_counter() - started)


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    summary="Publish a batch of customer touches",
    # 400, 401 and 403 are every route's (shared.http.FRONT_DOOR_RESPONSES); these say what they mean here.
    responses={
        413: {"model": ErrorBody, "description": "Body over 1 MiB or batch over 500 events."},
        415: {"model": ErrorBody, "description": "Content-Type is not application/json."},
        422: {"model": ErrorBody, "description": "Invalid events, each named by index, field and reason."},
        503: {
            "model": ErrorBody,
            "description": "Kafka did not acknowledge in time; retry after Retry-After.",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _batch_schema(500), "example": EXAMPLE_BATCH}},
        }
    },
)
async def publish_events(
    request: Request, principal: Writer, settings: Settings, publisher: Publisher
) -> Any:
    """Publish 1-500 touches, all or nothing. 202 only once Kafka has every event durably.

    Events are keyed by `customer_id`, so each customer's touches keep the order they have in the batch.
    `received_at` and `source` are stamped by the platform: `source` comes from your API key.
    **Retrying is always safe**: after a 503 or a lost connection, send the same batch again; every
    projection deduplicates by `event_id`, so an event sent twice is stored once.
    """
    started = time.perf_counter()
    try:
        accepted = await _publish(request, principal, settings, publisher)
    except Rejected as rejected:
        invalid = {problem.index for problem in rejected.problems} or {None}
        EVENTS_REJECTED.labels(principal.source, rejected.error).inc(len(invalid))
        response = rejected_response(rejected)
        REQUEST_SECONDS.labels(str(response.status_code)).observe(time.perf_counter() - started)
        return response
    except BrokerUnavailable as unavailable:
        REQUEST_SECONDS.labels("503").observe(time.perf_counter() - started)
        return error_response(
            503,
            "broker_unavailable",
            f"{unavailable}; retry the same batch",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    EVENTS_ACCEPTED.labels(principal.source, "http").inc(accepted)
    BATCH_SIZE.observe(accepted)
    REQUEST_SECONDS.labels("202").observe(time.perf_counter() - started)
    return Accepted(accepted=accepted)


class TrackingAccepted(BaseModel):
    """Segment's answer (`success`), with what Touchline accepted and, of a batch, what it refused."""

    success: bool = True
    accepted: int
    rejected: list[Problem] = Field(
        default_factory=list, description="Messages of a batch refused, by index."
    )


tracking = APIRouter(prefix="/v1", tags=["segment-compatible tracking"])
TRACKING_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Not JSON, or not a message object."},
    413: {"model": ErrorBody, "description": "Over Segment's 32 KB per call or 500 KB per batch."},
    422: {"model": ErrorBody, "description": "An invalid message, named by field and reason."},
    503: {"model": ErrorBody, "description": "Kafka did not acknowledge in time; retry after Retry-After."},
}
TRACKING_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
}


async def _tracked(
    request: Request,
    principal: Principal,
    settings: IngestSettings,
    publisher: RecordPublisher,
    call: Call | None,
) -> Any:
    received_at = datetime.now(UTC)
    try:
        body = await _read_json(request)
        if call is None:
            events, problems = parse_batch_call(body, received_at, settings.policy())
        else:
            events, problems = [parse_call(body, call, received_at, settings.policy())], []
    except Rejected as rejected:
        EVENTS_REJECTED.labels(principal.source, rejected.error).inc()
        return rejected_response(rejected)
    await _publish_touches(events, received_at, principal, settings, publisher)
    EVENTS_ACCEPTED.labels(principal.source, "segment").inc(len(events))
    EVENTS_REJECTED.labels(principal.source, "invalid_message").inc(len({p.index for p in problems}))
    return TrackingAccepted(accepted=len(events), rejected=problems)


@tracking.post(
    "/batch", response_model=TrackingAccepted, responses=TRACKING_ERRORS, openapi_extra=TRACKING_BODY
)
async def segment_batch(request: Request, principal: Writer, settings: Settings, publisher: Publisher) -> Any:
    """Segment's batch call: `{"batch": [message, ...], "sentAt": ...}`, each message naming its `type`.
    Authenticate as Segment's libraries do: Basic auth with the API key as user name. The valid
    messages are accepted even when others are refused; `rejected` names those by index."""
    return await _tracked(request, principal, settings, publisher, None)


def _single_call(call: Call) -> None:
    async def route(request: Request, principal: Writer, settings: Settings, publisher: Publisher) -> Any:
        return await _tracked(request, principal, settings, publisher, call)

    tracking.add_api_route(
        f"/{call}",
        route,
        methods=["POST"],
        name=f"segment_{call}",
        summary=f"Segment's {call} call",
        description=f"One {call} message as Segment's HTTP Tracking API takes it (see README).",
        response_model=TrackingAccepted,
        responses=TRACKING_ERRORS,
        openapi_extra=TRACKING_BODY,
    )


for _call in CALLS:
    _single_call(_call)
routes = APIRouter()
routes.include_router(router)
routes.include_router(tracking)


def create_app(settings: IngestSettings, publisher: RecordPublisher | None = None) -> FastAPI:
    publisher = publisher or DurablePublisher(settings, settings.ingest_produce_timeout_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await publisher.close()

    app = create_service_app(
        settings,
        "Touchline ingest",
        "Channel systems publish customer touches: Touchline's own batches, or Segment's calls. "
        "Authenticate: `Authorization: Bearer <key>` (Segment's libraries: Basic, the key as user name).",
        routes,
        lifespan,
        publisher.ready,
        body_limits={"/v1/events": settings.ingest_max_body_bytes, "/v1/batch": MAX_BATCH_BYTES}
        | {f"/v1/{call}": MAX_MESSAGE_BYTES for call in CALLS},
    )
    app.state.publisher = publisher
    return app
