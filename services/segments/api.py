"""HTTP edge of segments: definitions for marketing (segments:admin), membership reads (segments:read)."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

from services.segments.evaluation import rule_problems
from services.segments.settings import SegmentsSettings
from services.segments.store import SegmentStore, StoredDefinition
from shared.auth import Principal, require_scope
from shared.cursors import BIGINT_POSITION, decode_cursor, encode_cursor
from shared.errors import Problem
from shared.events import Identifier, StorableText
from shared.http import (
    CustomerIdPath,
    ErrorBody,
    IdentifierPath,
    create_publishing_app,
    error_response,
    from_state,
    invalid_parameter,
)
from shared.kafka import BrokerUnavailable, DurablePublisher, RecordPublisher
from shared.rules import Rule, SegmentDefinition
from shared.serialization import encode
from shared.topics import SEGMENT_DEFINITIONS

Admin = Annotated[Principal, Depends(require_scope("segments:admin"))]
Reader = Annotated[Principal, Depends(require_scope("segments:read"))]
Settings = Annotated[SegmentsSettings, Depends(from_state("settings"))]
Publisher = Annotated[RecordPublisher, Depends(from_state("publisher"))]
Store = Annotated[SegmentStore, Depends(from_state("store"))]
Limit = Annotated[int, Query(ge=1, le=1000)]
CursorQuery = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]

EXAMPLE_RULE: dict[str, JsonValue] = {
    "all": [
        {"count": {"type": "purchase", "within": "30d"}, "gte": 2},
        {"not": {"count": {"type": "support.complaint", "within": "7d"}, "gte": 1}},
    ]
}


class SegmentUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "Repeat buyers", "rule": EXAMPLE_RULE}]}
    )
    name: StorableText = Field(min_length=1, max_length=200)
    rule: Rule


class SegmentIn(SegmentUpdate):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"id": "repeat-buyers", "name": "Repeat buyers", "rule": EXAMPLE_RULE}]
        }
    )
    id: Identifier


class SegmentView(BaseModel):
    id: str
    name: str
    version: int
    rule: Rule
    deleted: bool = False
    created_at: datetime
    updated_at: datetime


class SegmentPage(BaseModel):
    segments: list[SegmentView]
    next_cursor: str | None


class MemberView(BaseModel):
    customer_id: str
    segment_version: int
    entered_at: datetime


class MembersPage(BaseModel):
    segment_id: str
    members: list[MemberView]
    next_cursor: str | None


class ChangeView(BaseModel):
    customer_id: str
    transition: str = Field(description="`entered` or `exited`.")
    at: datetime
    reason: str = Field(
        description="Why: `event`, `time`, `consent`, `identity_merged`, `identity_split`, ..."
    )
    segment_version: int


class ChangesPage(BaseModel):
    segment_id: str
    changes: list[ChangeView]
    next_cursor: str | None


class SegmentStatsView(BaseModel):
    segment_id: str
    version: int
    members: int
    entered_last_hour: int
    exited_last_hour: int
    entered_last_day: int
    exited_last_day: int


class CustomerSegmentView(BaseModel):
    segment_id: str
    name: str
    segment_version: int
    entered_at: datetime


class CustomerSegments(BaseModel):
    customer_id: str
    segments: list[CustomerSegmentView]


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (401, 403, 422)}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorBody, "description": "The id is taken."}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "No such segment."}}
CHANGES: dict[int | str, dict[str, Any]] = ERRORS | {
    503: {"model": ErrorBody, "description": "Kafka unavailable; nothing was changed, retry."}
}

definitions = APIRouter(prefix="/v1/segments", tags=["segment definitions"])
membership = APIRouter(tags=["segment membership"])


def _view(stored: StoredDefinition) -> SegmentView:
    return SegmentView(
        id=stored.segment_id,
        name=stored.name,
        version=stored.version,
        rule=stored.rule,
        deleted=stored.deleted,
        created_at=stored.created_at,
        updated_at=stored.updated_at,
    )


def _not_found(segment_id: str) -> JSONResponse:
    return error_response(404, "not_found", f"no segment {segment_id!r}")


def _invalid_rule(rule: Rule, settings: SegmentsSettings) -> JSONResponse | None:
    problems = rule_problems(rule, settings.horizon_seconds)
    if not problems:
        return None
    details = [Problem(field=path, reason=reason) for path, reason in problems]
    return error_response(422, "invalid_request", "the request is invalid", details)


# Given the live definition (None if there is none) and the next version number: the version to store,
# or the response refusing the change.
Decision = Callable[[StoredDefinition | None, int], SegmentDefinition | JSONResponse]


async def _commit(
    store: SegmentStore,
    publisher: RecordPublisher,
    settings: SegmentsSettings,
    segment_id: str,
    decide: Decision,
) -> StoredDefinition | JSONResponse:
    """Stores and publishes a segment's next version, all or nothing."""
    try:
        async with store.changing_definition(segment_id) as change:
            live = change.current if change.current and not change.current.deleted else None
            decided = decide(live, change.current.version + 1 if change.current else 1)
            if isinstance(decided, JSONResponse):
                return decided
            stored = await change.save(decided, live.created_at if live else decided.changed_at)
            # Still inside the transaction: if Kafka does not take the version, the database drops it too.
            topic = settings.topic(SEGMENT_DEFINITIONS)
            await publisher.publish(topic, [(segment_id.encode(), encode(decided))])
            return stored
    except BrokerUnavailable as unavailable:
        return error_response(
            503, "broker_unavailable", f"{unavailable}; retry", headers={"Retry-After": "5"}
        )


def _version(
    segment_id: str, version: int, name: str, rule: Rule, deleted: bool = False
) -> SegmentDefinition:
    return SegmentDefinition(
        segment_id=segment_id,
        version=version,
        name=name,
        rule=rule,
        deleted=deleted,
        changed_at=datetime.now(UTC),
    )


@definitions.post(
    "", status_code=status.HTTP_201_CREATED, response_model=SegmentView, responses=CHANGES | CONFLICT
)
async def create_segment(
    segment: SegmentIn, _: Admin, settings: Settings, store: Store, publisher: Publisher
) -> Any:
    """Define a segment. Every known customer is evaluated at once: current members get `entered`."""
    invalid = _invalid_rule(segment.rule, settings)
    if invalid:
        return invalid

    def decide(live: StoredDefinition | None, version: int) -> SegmentDefinition | JSONResponse:
        if live:
            return error_response(409, "conflict", f"segment {segment.id!r} exists; PUT changes it")
        return _version(segment.id, version, segment.name, segment.rule)

    return _answer(await _commit(store, publisher, settings, segment.id, decide))


@definitions.put("/{segment_id}", response_model=SegmentView, responses=CHANGES | NOT_FOUND)
async def update_segment(
    segment_id: IdentifierPath,
    update: SegmentUpdate,
    _: Admin,
    settings: Settings,
    store: Store,
    publisher: Publisher,
) -> Any:
    """A new version of the segment: every known customer is re-evaluated at once, and only those whose
    membership changes get `entered` or `exited` (reason `definition_changed`)."""
    invalid = _invalid_rule(update.rule, settings)
    if invalid:
        return invalid

    def decide(live: StoredDefinition | None, version: int) -> SegmentDefinition | JSONResponse:
        return _version(segment_id, version, update.name, update.rule) if live else _not_found(segment_id)

    return _answer(await _commit(store, publisher, settings, segment_id, decide))


@definitions.delete(
    "/{segment_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SegmentView,
    responses=CHANGES | NOT_FOUND,
)
async def delete_segment(
    segment_id: IdentifierPath, _: Admin, settings: Settings, store: Store, publisher: Publisher
) -> Any:
    """Delete the segment: every member gets `exited` (reason `segment_deleted`) within moments. The id
    can be defined again later; its versions continue from the deleted one."""

    def decide(live: StoredDefinition | None, version: int) -> SegmentDefinition | JSONResponse:
        return (
            _version(segment_id, version, live.name, live.rule, deleted=True)
            if live
            else _not_found(segment_id)
        )

    return _answer(await _commit(store, publisher, settings, segment_id, decide))


def _answer(result: StoredDefinition | JSONResponse) -> Any:
    return result if isinstance(result, JSONResponse) else _view(result)


def _after(cursor: str | None) -> str | JSONResponse:
    """The id a page starts after (both pages here are by id), or the 422 for a cursor not ours."""
    try:
        (after,) = decode_cursor(cursor, _CURSOR) if cursor else ("",)
    except ValueError as error:
        return invalid_parameter("cursor", str(error))
    return after


_CURSOR = TypeAdapter(tuple[Identifier])  # both pages are by id: a segment's or a customer's


@definitions.get("", response_model=SegmentPage, responses=ERRORS)
async def list_segments(_: Admin, store: Store, limit: Limit = 100, cursor: CursorQuery = None) -> Any:
    """Every live segment, by id."""
    after = _after(cursor)
    if isinstance(after, JSONResponse):
        return after
    page = await store.definitions(after, limit + 1)
    next_cursor = encode_cursor(page[limit - 1].segment_id) if len(page) > limit else None
    return SegmentPage(segments=[_view(stored) for stored in page[:limit]], next_cursor=next_cursor)


@definitions.get("/{segment_id}", response_model=SegmentView, responses=ERRORS | NOT_FOUND)
async def read_segment(segment_id: IdentifierPath, _: Admin, store: Store) -> Any:
    """One segment's current version."""
    stored = await store.definition(segment_id)
    return _view(stored) if stored else _not_found(segment_id)


@membership.get("/v1/segments/{segment_id}/members", response_model=MembersPage, responses=ERRORS | NOT_FOUND)
async def segment_members(
    segment_id: IdentifierPath, _: Reader, store: Store, limit: Limit = 100, cursor: CursorQuery = None
) -> Any:
    """Current members, by customer id; follow `next_cursor` for the next page."""
    after = _after(cursor)
    if isinstance(after, JSONResponse):
        return after
    if not await store.definition(segment_id):
        return _not_found(segment_id)
    page = await store.members(segment_id, after, limit + 1)
    members = [
        MemberView(customer_id=m.customer_id, segment_version=m.version, entered_at=m.entered_at)
        for m in page[:limit]
    ]
    next_cursor = encode_cursor(page[limit - 1].customer_id) if len(page) > limit else None
    return MembersPage(segment_id=segment_id, members=members, next_cursor=next_cursor)


@membership.get("/v1/segments/{segment_id}/changes", response_model=ChangesPage, responses=ERRORS | NOT_FOUND)
async def segment_changes(
    segment_id: IdentifierPath, _: Reader, store: Store, limit: Limit = 100, cursor: CursorQuery = None
) -> Any:
    """Membership changes, newest first, as they were published on `segment.membership`: the feed a
    marketer watches. Follow `next_cursor` for older ones."""
    try:
        (before,) = decode_cursor(cursor, BIGINT_POSITION) if cursor else (None,)
    except ValueError as error:
        return invalid_parameter("cursor", str(error))
    if not await store.definition(segment_id):
        return _not_found(segment_id)
    page = await store.changes(segment_id, before, limit + 1)
    changes = [
        ChangeView(
            customer_id=c.customer_id,
            transition=c.transition,
            at=c.at,
            reason=c.reason,
            segment_version=c.version,
        )
        for c in page[:limit]
    ]
    next_cursor = encode_cursor(page[limit - 1].sequence) if len(page) > limit else None
    return ChangesPage(segment_id=segment_id, changes=changes, next_cursor=next_cursor)


@membership.get(
    "/v1/segments/{segment_id}/stats", response_model=SegmentStatsView, responses=ERRORS | NOT_FOUND
)
async def segment_stats(segment_id: IdentifierPath, _: Reader, store: Store) -> Any:
    """Member count, and how many entered and exited in the last hour and day."""
    stored = await store.definition(segment_id)
    if not stored:
        return _not_found(segment_id)
    stats = await store.stats(segment_id)
    return SegmentStatsView(segment_id=segment_id, version=stored.version, **stats._asdict())


@membership.get("/v1/customers/{customer_id}/segments", response_model=CustomerSegments, responses=ERRORS)
async def customer_segments(customer_id: CustomerIdPath, _: Reader, store: Store) -> Any:
    """The segments a customer is in now (none for a customer Touchline has not seen)."""
    rows = await store.customer_segments(customer_id)
    segments = [
        CustomerSegmentView(
            segment_id=r.segment_id, name=r.name, segment_version=r.version, entered_at=r.entered_at
        )
        for r in rows
    ]
    return CustomerSegments(customer_id=customer_id, segments=segments)


def create_app(settings: SegmentsSettings, publisher: RecordPublisher | None = None) -> FastAPI:
    router = APIRouter()
    router.include_router(definitions)
    router.include_router(membership)
    return create_publishing_app(
        settings,
        "Touchline segments",
        "Segment definitions, live membership, and the `segment.membership` changes campaign tools consume.",
        router,
        SegmentStore,
        publisher or DurablePublisher(settings, settings.segments_publish_timeout_seconds),
    )
