"""HTTP edge of the timeline: a customer's history, newest first, and their 360-degree profile."""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query
from pydantic import BaseModel, Field, JsonValue, TypeAdapter, ValidationError

from services.timeline.domain import Cursor, PageQuery, TimelineRow, split_values
from services.timeline.metrics import READ_SECONDS
from services.timeline.settings import TimelineSettings
from services.timeline.store import TimelineStore
from shared.auth import Principal, require_scope
from shared.db import create_pool
from shared.events import Channel, ConsentStatus, EventType, Purpose, Timestamp
from shared.http import (
    CustomerIdPath,
    ErrorBody,
    create_service_app,
    error_response,
    from_state,
    invalid_parameter,
)
from shared.profiles import PostgresProfileReads, ProfileReads
from shared.purposes import PROJECTION_PURPOSES

Reader = Annotated[Principal, Depends(require_scope("timeline:read"))]
Settings = Annotated[TimelineSettings, Depends(from_state("settings"))]
Store = Annotated[TimelineStore, Depends(from_state("store"))]
Reads = Annotated[ProfileReads, Depends(from_state("profile_reads"))]
_TYPES, _CHANNELS = TypeAdapter(list[EventType]), TypeAdapter(list[Channel])
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 404, 422)}


class TimelineEvent(BaseModel):
    event_id: str
    type: str
    channel: str
    occurred_at: datetime
    properties: dict[str, JsonValue]
    received_at: datetime
    source: str


class TimelinePage(BaseModel):
    events: list[TimelineEvent]
    next_cursor: str | None


class ProfileSegment(BaseModel):
    segment_id: str
    name: str
    since: datetime


class TraitView(BaseModel):
    value: JsonValue
    at: datetime = Field(description="occurred_at of the identify touch that said it last.")
    source: str = Field(description="The channel system that said it.")


class Profile(BaseModel):
    customer_id: str
    first_seen: datetime
    last_seen: datetime
    event_count: int
    events_by_channel: dict[str, int]
    events_by_type: dict[str, int]
    purchase_count: int
    purchase_amount: Decimal
    traits: dict[str, TraitView] = Field(
        description="Each trait's latest value from the person's identify touches (Segment identify calls)."
    )
    consent: dict[Purpose, ConsentStatus] | None = Field(
        default=None, description="Present only for a key that also holds `consent:read`."
    )
    segments: list[ProfileSegment] | None = Field(
        default=None, description="Present only for a key that also holds `segments:read`."
    )


router = APIRouter(prefix="/v1/customers/{customer_id}", tags=["timeline"])


def _event(row: TimelineRow) -> TimelineEvent:
    return TimelineEvent(
        event_id=row.event_id,
        type=row.type,
        channel=row.channel,
        occurred_at=row.occurred_at,
        properties=orjson.loads(row.properties),
        received_at=row.received_at,
        source=row.source,
    )


async def _person(customer_id: str, reads: ProfileReads, settings: TimelineSettings) -> tuple[str, ...]:
    """The profile ids whose touches are this person's timeline: the surviving profile's, and those of
    the profiles merged into it unless the survivor now denies what the timeline needs. Their rows were
    allowed by their own consent; joined, they may not be shown past the survivor's."""
    ids = await reads.profile_ids(customer_id)
    if not ids.absorbed:
        return (ids.survivor,)
    consent = settings.default_consent() | await reads.explicit_consent(ids.survivor)
    if any(consent[purpose] is not ConsentStatus.GRANTED for purpose in PROJECTION_PURPOSES["timeline"]):
        return (ids.survivor,)
    return (ids.survivor, *ids.absorbed)


def _unknown(customer_id: str) -> Any:
    message = f"no timeline for customer {customer_id!r}: no event of theirs is stored, or consent forbids it"
    return error_response(404, "unknown_customer", message)


@router.get("/timeline", response_model=TimelinePage, responses=ERRORS)
async def read_timeline(
    customer_id: CustomerIdPath,
    _: Reader,
    store: Store,
    reads: Reads,
    settings: Settings,
    limit: Annotated[int, Query(ge=1, le=500, description="Events per page.")] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    types: Annotated[
        list[str] | None, Query(description="Only these types: `types=a,b` or repeated.")
    ] = None,
    channels: Annotated[list[str] | None, Query(description="Only these channels.")] = None,
    since: Annotated[Timestamp | None, Query(description="occurred_at at or after (RFC 3339).")] = None,
    until: Annotated[Timestamp | None, Query(description="occurred_at before (RFC 3339).")] = None,
) -> Any:
    """A customer's touches, newest first by `occurred_at`; filters combine with AND. The cursor is a
    position, not a page number: paging never skips or repeats an event while new ones arrive.
    Identity merges join timelines: the id of any profile merged into another reads the whole person."""
    started = time.perf_counter()
    try:
        after = Cursor.decode(cursor) if cursor else None
    except ValueError as error:
        return invalid_parameter("cursor", str(error))
    wanted = {}
    for name, values, adapter in (("types", types, _TYPES), ("channels", channels, _CHANNELS)):
        try:
            wanted[name] = frozenset(adapter.validate_python(sorted(split_values(values))))
        except ValidationError as error:
            return invalid_parameter(name, error.errors()[0]["msg"])
    person = await _person(customer_id, reads, settings)
    query = PageQuery(person, limit + 1, after, wanted["types"], wanted["channels"], since, until)
    rows = await store.page(query)
    if rows is None:
        return _unknown(customer_id)
    page = rows[:limit]
    next_cursor = Cursor(page[-1].occurred_at, page[-1].event_id).encode() if len(rows) > limit else None
    READ_SECONDS.labels("timeline").observe(time.perf_counter() - started)
    return TimelinePage(events=[_event(row) for row in page], next_cursor=next_cursor)


@router.get("/profile", response_model=Profile, response_model_exclude_none=True, responses=ERRORS)
async def read_profile(
    customer_id: CustomerIdPath,
    reader: Reader,
    store: Store,
    reads: Reads,
    settings: Settings,
) -> Any:
    """The 360-degree summary: first and last seen, totals by channel and type, purchases; consent for a
    key holding `consent:read`, and the segments the customer is in now for one holding `segments:read`."""
    started = time.perf_counter()
    person = await _person(customer_id, reads, settings)
    summary = await store.profile(person)
    if summary is None:
        return _unknown(customer_id)
    customer_id = person[0]
    # Least privilege: what the consent and segments services hold is theirs to grant, scope by scope.
    consent = None
    if "consent:read" in reader.scopes:
        consent = settings.default_consent() | await reads.explicit_consent(customer_id)
    memberships = None
    if "segments:read" in reader.scopes:
        memberships = [
            ProfileSegment(segment_id=m.segment_id, name=m.name, since=m.entered_at)
            for m in await reads.current_segments(customer_id)
        ]
    READ_SECONDS.labels("profile").observe(time.perf_counter() - started)
    return Profile(
        customer_id=customer_id,
        first_seen=summary.first_seen,
        last_seen=summary.last_seen,
        event_count=summary.event_count,
        events_by_channel=summary.by_channel,
        events_by_type=summary.by_type,
        purchase_count=summary.purchase_count,
        purchase_amount=summary.purchase_amount,
        traits={
            name: TraitView(value=t.value, at=t.at, source=t.source) for name, t in summary.traits.items()
        },
        consent=consent,
        segments=memberships,
    )


def create_app(settings: TimelineSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings.pg_dsn.get_secret_value())
        app.state.store, app.state.profile_reads = TimelineStore(pool), PostgresProfileReads(pool)
        try:
            yield
        finally:
            await pool.close()

    async def ready() -> bool:
        store: TimelineStore = app.state.store
        return await store.ready()

    app = create_service_app(
        settings,
        "Touchline timeline",
        "Each customer's history and 360-degree profile, for front-office apps.",
        router,
        lifespan,
        ready,
    )
    return app
