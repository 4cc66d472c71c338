"""Segments in PostgreSQL: customer digests, members, the change outbox and the evaluator's offsets.

Exactly-once by tracking rows: the evaluator advances `segment_offsets` in the same transaction as the
digests, members and changes a batch produced, and skips records below them when Kafka redelivers.
Changes wait in `segment_changes` (an outbox) until the relay has them acknowledged by Kafka, so a crash
between the two re-publishes a change under the same change_id rather than losing it.
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

import asyncpg
import orjson
from pydantic import TypeAdapter

from services.segments.domain import Change, CustomerState, Outcome
from services.segments.evaluation import MICROS, Point
from shared.db import answers
from shared.events import MembershipTransition
from shared.rules import Rule, SegmentDefinition

_LOCK = """
SELECT customer_id, digest, evaluated_at, revision FROM segment_customers WHERE customer_id = ANY($1::text[])
ORDER BY customer_id FOR UPDATE
"""
_LOCK_DUE = """
SELECT customer_id, digest, evaluated_at, revision FROM segment_customers WHERE next_change_at <= $1
ORDER BY next_change_at LIMIT $2 FOR UPDATE SKIP LOCKED
"""
_LOCK_STALE = """
SELECT customer_id, digest, evaluated_at, revision FROM segment_customers WHERE revision < $1
LIMIT $2 FOR UPDATE SKIP LOCKED
"""
_MEMBERS_OF = """
SELECT customer_id, segment_id, version FROM segment_members WHERE customer_id = ANY($1::text[])
"""
_OFFSETS = """
SELECT partition, next_offset FROM segment_offsets WHERE topic = $1 AND partition = ANY($2::int[])
ORDER BY partition FOR UPDATE
"""
_UPSERT_CUSTOMERS = """
INSERT INTO segment_customers (customer_id, digest, evaluated_at, revision, next_change_at)
SELECT * FROM unnest($1::text[], $2::bytea[], $3::bigint[], $4::bigint[], $5::bigint[])
ON CONFLICT (customer_id) DO UPDATE SET digest = excluded.digest, evaluated_at = excluded.evaluated_at,
    revision = excluded.revision, next_change_at = excluded.next_change_at
"""
_FORGET_CUSTOMERS = "DELETE FROM segment_customers WHERE customer_id = ANY($1::text[])"
_UPSERT_MEMBERS = """
INSERT INTO segment_members (segment_id, customer_id, version, entered_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::timestamptz[])
ON CONFLICT (segment_id, customer_id)
    DO UPDATE SET version = excluded.version, entered_at = excluded.entered_at
"""
_UPDATE_VERSIONS = """
UPDATE segment_members m SET version = u.version
FROM unnest($1::text[], $2::text[], $3::integer[]) AS u(segment_id, customer_id, version)
WHERE m.segment_id = u.segment_id AND m.customer_id = u.customer_id
"""
_DELETE_MEMBERS = """
DELETE FROM segment_members m USING unnest($1::text[], $2::text[]) AS d(segment_id, customer_id)
WHERE m.segment_id = d.segment_id AND m.customer_id = d.customer_id
"""
_INSERT_CHANGES = """
INSERT INTO segment_changes (change_id, segment_id, version, customer_id, transition, at, reason, received_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::integer[], $4::text[], $5::text[], $6::timestamptz[],
                     $7::text[], $8::timestamptz[])
ON CONFLICT (change_id) DO NOTHING
"""


def moment(micros: int) -> datetime:
    return datetime.fromtimestamp(micros // MICROS, UTC).replace(microsecond=micros % MICROS)


def encode_digest(points: Sequence[Point]) -> bytes:
    return orjson.dumps([[p.at, p.key, p.type, p.channel, p.values] for p in points])


def decode_digest(data: bytes) -> tuple[Point, ...]:
    return tuple(
        Point(at, key, kind, channel, values) for at, key, kind, channel, values in orjson.loads(data)
    )


class MemberWrites(NamedTuple):
    entered: list[tuple[str, str, int, datetime]]
    versions: list[tuple[str, str, int]]
    left: list[tuple[str, str]]


def member_writes(before: CustomerState | None, after: Outcome) -> MemberWrites:
    """The segment_members rows one customer's outcome adds, re-versions and removes."""
    old = before.members if before else {}
    new = after.state.members if after.state else {}
    customer = before.customer_id if before else after.state.customer_id if after.state else ""
    entered_at = {c.segment_id: c.at for c in after.changes if c.transition == MembershipTransition.ENTERED}
    writes = MemberWrites([], [], [(segment, customer) for segment in old if segment not in new])
    for segment, version in new.items():
        if segment in entered_at:
            writes.entered.append((segment, customer, version, moment(entered_at[segment])))
        elif old.get(segment) != version:
            writes.versions.append((segment, customer, version))
    return writes


def _columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


class Evaluation:
    """One evaluator transaction: lock customers, then save what the domain decided for them."""

    def __init__(self, connection: "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]") -> None:
        self.connection = connection

    async def offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        rows = await self.connection.fetch(_OFFSETS, topic, list(partitions))
        return {row["partition"]: row["next_offset"] for row in rows}

    async def advance_offsets(self, topic: str, offsets: Mapping[int, int]) -> None:
        # Never backwards: a redelivered batch can end below what an earlier batch already applied.
        await self.connection.execute(
            "INSERT INTO segment_offsets (topic, partition, next_offset)"
            " SELECT $1, * FROM unnest($2::int[], $3::bigint[])"
            " ON CONFLICT (topic, partition) DO UPDATE"
            " SET next_offset = greatest(segment_offsets.next_offset, excluded.next_offset)",
            topic,
            list(offsets),
            list(offsets.values()),
        )

    async def lock(self, customer_ids: Sequence[str]) -> dict[str, CustomerState]:
        """The customers' states, locked; waits for another transaction holding one of them."""
        return await self._load(_LOCK, list(customer_ids))

    async def lock_due(self, now: int, limit: int) -> dict[str, CustomerState]:
        """Customers whose next boundary has passed; ones another transaction holds are left to it."""
        return await self._load(_LOCK_DUE, now, limit)

    async def lock_stale(self, revision: int, limit: int) -> dict[str, CustomerState]:
        """Customers not yet evaluated against definitions revision `revision` (the backfill)."""
        return await self._load(_LOCK_STALE, revision, limit)

    async def _load(self, query: str, *arguments: Any) -> dict[str, CustomerState]:
        rows = await self.connection.fetch(query, *arguments)
        if not rows:
            return {}
        members: dict[str, dict[str, int]] = {row["customer_id"]: {} for row in rows}
        for member in await self.connection.fetch(_MEMBERS_OF, list(members)):
            members[member["customer_id"]][member["segment_id"]] = member["version"]
        return {
            row["customer_id"]: CustomerState(
                row["customer_id"],
                decode_digest(row["digest"]),
                members[row["customer_id"]],
                row["evaluated_at"],
                row["revision"],
            )
            for row in rows
        }

    async def save(
        self,
        before: Mapping[str, CustomerState],
        outcomes: Mapping[str, Outcome],
        next_change_at: Callable[[CustomerState], int | None],
        received_at: Mapping[int, datetime],
    ) -> None:
        """Writes outcomes; `received_at` maps an input's instant to its touch's arrival, for latency."""
        kept = [o.state for o in outcomes.values() if o.state is not None]
        forgotten = [customer for customer, o in outcomes.items() if o.state is None and customer in before]
        rows = [
            (s.customer_id, encode_digest(s.points), s.evaluated_at, s.revision, next_change_at(s))
            for s in kept
        ]
        writes = [member_writes(before.get(customer), o) for customer, o in outcomes.items()]
        changes = [_change_row(c, received_at) for o in outcomes.values() for c in o.changes]
        await self._write(_UPSERT_CUSTOMERS, rows)
        await self._write(_FORGET_CUSTOMERS, [(customer,) for customer in forgotten])
        await self._write(_DELETE_MEMBERS, [r for w in writes for r in w.left])
        await self._write(_UPSERT_MEMBERS, [r for w in writes for r in w.entered])
        await self._write(_UPDATE_VERSIONS, [r for w in writes for r in w.versions])
        await self._write(_INSERT_CHANGES, changes)

    async def _write(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement over column arrays; none at all for no rows (the timer mostly finds none)."""
        if rows:
            await self.connection.execute(statement, *_columns(rows))


def _change_row(change: Change, received_at: Mapping[int, datetime]) -> tuple[Any, ...]:
    return (
        change.change_id,
        change.segment_id,
        change.version,
        change.customer_id,
        change.transition.value,
        moment(change.at),
        change.reason.value,
        received_at.get(change.at),
    )


class PendingChange(NamedTuple):
    change_id: str
    segment_id: str
    version: int
    customer_id: str
    transition: str
    at: datetime
    reason: str
    received_at: datetime | None


class SegmentStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def evaluation(self) -> AsyncIterator[Evaluation]:
        async with self.pool.acquire() as connection, connection.transaction():
            yield Evaluation(connection)

    async def publish_pending(
        self, publish: Callable[[list[PendingChange]], Awaitable[None]], limit: int
    ) -> int:
        """Hands the oldest unpublished changes to `publish` and marks them once it returns.

        One relay at a time (an advisory lock), so changes leave in the order they were decided.
        """
        async with self.pool.acquire() as connection, connection.transaction():
            if not await connection.fetchval("SELECT pg_try_advisory_xact_lock(hashtext('segment_changes'))"):
                return 0
            rows = await connection.fetch(
                "SELECT change_id, segment_id, version, customer_id, transition, at, reason, received_at"
                " FROM segment_changes WHERE NOT published ORDER BY sequence LIMIT $1",
                limit,
            )
            if rows:
                await publish([PendingChange(*row) for row in rows])
                await connection.execute(
                    "UPDATE segment_changes SET published = true WHERE change_id = ANY($1::text[])",
                    [row["change_id"] for row in rows],
                )
            return len(rows)

    async def state_size(self) -> tuple[int, int]:
        """Customers with a digest, and the bytes their digests take."""
        row = await self.pool.fetchrow(
            "SELECT count(*), coalesce(sum(pg_column_size(digest)), 0) FROM segment_customers"
        )
        assert row is not None
        return row[0], row[1]

    @asynccontextmanager
    async def changing_definition(self, segment_id: str) -> AsyncIterator["DefinitionChange"]:
        """The segment's stored definition, held until the block ends: one change of a segment at a time."""
        async with self.pool.acquire() as connection, connection.transaction():
            # A new id has no row to lock yet, so a transaction-scoped advisory lock on the id serializes.
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", segment_id)
            row = await connection.fetchrow(_DEFINITION + "WHERE segment_id = $1", segment_id)
            yield DefinitionChange(connection, _stored(row) if row else None)

    async def definition(self, segment_id: str) -> "StoredDefinition | None":
        row = await self.pool.fetchrow(_DEFINITION + "WHERE segment_id = $1 AND NOT deleted", segment_id)
        return _stored(row) if row else None

    async def definitions(self, after: str, limit: int) -> list["StoredDefinition"]:
        rows = await self.pool.fetch(
            _DEFINITION + "WHERE segment_id > $1 AND NOT deleted ORDER BY segment_id LIMIT $2", after, limit
        )
        return [_stored(row) for row in rows]

    async def members(self, segment_id: str, after: str, limit: int) -> list["Member"]:
        rows = await self.pool.fetch(
            "SELECT customer_id, version, entered_at FROM segment_members"
            " WHERE segment_id = $1 AND customer_id > $2 ORDER BY customer_id LIMIT $3",
            segment_id,
            after,
            limit,
        )
        return [Member(*row) for row in rows]

    async def stats(self, segment_id: str) -> "SegmentStats":
        row = await self.pool.fetchrow(_STATS, segment_id)
        assert row is not None
        return SegmentStats(*row)

    async def customer_segments(self, customer_id: str) -> list["CustomerMembership"]:
        rows = await self.pool.fetch(
            "SELECT m.segment_id, d.name, m.version, m.entered_at FROM segment_members m"
            " JOIN segment_definitions d USING (segment_id) WHERE m.customer_id = $1 ORDER BY m.segment_id",
            customer_id,
        )
        return [CustomerMembership(*row) for row in rows]

    async def ready(self) -> bool:
        return await answers(self.pool)


_DEFINITION = (
    "SELECT segment_id, version, name, rule::text, deleted, created_at, updated_at FROM segment_definitions "
)
_SAVE_DEFINITION = """
INSERT INTO segment_definitions AS d (segment_id, version, name, rule, deleted, created_at, updated_at)
VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)
ON CONFLICT (segment_id) DO UPDATE SET version = excluded.version, name = excluded.name, rule = excluded.rule,
    deleted = excluded.deleted, created_at = excluded.created_at, updated_at = excluded.updated_at
"""
_STATS = """
SELECT
    (SELECT count(*) FROM segment_members WHERE segment_id = $1),
    count(*) FILTER (WHERE transition = 'entered' AND at > now() - interval '1 hour'),
    count(*) FILTER (WHERE transition = 'exited' AND at > now() - interval '1 hour'),
    count(*) FILTER (WHERE transition = 'entered'),
    count(*) FILTER (WHERE transition = 'exited')
FROM segment_changes WHERE segment_id = $1 AND at > now() - interval '1 day'
"""


class StoredDefinition(NamedTuple):
    segment_id: str
    version: int
    name: str
    rule: Rule
    deleted: bool
    created_at: datetime
    updated_at: datetime


_rule = TypeAdapter[Rule](Rule)


def _stored(row: asyncpg.Record) -> StoredDefinition:
    return StoredDefinition(
        row["segment_id"],
        row["version"],
        row["name"],
        _rule.validate_json(row["rule"]),
        row["deleted"],
        row["created_at"],
        row["updated_at"],
    )


class DefinitionChange:
    def __init__(
        self, connection: "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]", current: StoredDefinition | None
    ) -> None:
        self.connection, self.current = connection, current

    async def save(self, definition: SegmentDefinition, created_at: datetime) -> StoredDefinition:
        await self.connection.execute(
            _SAVE_DEFINITION,
            definition.segment_id,
            definition.version,
            definition.name,
            _rule.dump_json(definition.rule, exclude_none=True).decode(),
            definition.deleted,
            created_at,
            definition.changed_at,
        )
        return StoredDefinition(
            definition.segment_id,
            definition.version,
            definition.name,
            definition.rule,
            definition.deleted,
            created_at,
            definition.changed_at,
        )


class Member(NamedTuple):
    customer_id: str
    version: int
    entered_at: datetime


class SegmentStats(NamedTuple):
    members: int
    entered_last_hour: int
    exited_last_hour: int
    entered_last_day: int
    exited_last_day: int


class CustomerMembership(NamedTuple):
    segment_id: str
    name: str
    version: int
    entered_at: datetime
