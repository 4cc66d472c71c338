"""The segments API's store: definitions (the API's durable copy of segment.definitions) and membership
reads. The evaluator's state is in evaluation_store.py, the change outbox in outbox.py."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import NamedTuple

import asyncpg
from pydantic import TypeAdapter

from shared.db import answers
from shared.profiles import CurrentSegment, current_segments
from shared.rules import Rule, SegmentDefinition


class SegmentStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

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

    async def changes(self, segment_id: str, before: int | None, limit: int) -> list["Change"]:
        """Published changes, newest first, below sequence `before` when given."""
        rows = await self.pool.fetch(
            "SELECT sequence, customer_id, transition, at, reason, version FROM segment_changes"
            " WHERE segment_id = $1 AND published AND sequence < $2 ORDER BY sequence DESC LIMIT $3",
            segment_id,
            2**63 - 1 if before is None else before,
            limit,
        )
        return [Change(*row) for row in rows]

    async def stats(self, segment_id: str) -> "SegmentStats":
        row = await self.pool.fetchrow(_STATS, segment_id)
        assert row is not None
        return SegmentStats(*row)

    async def customer_segments(self, customer_id: str) -> list[CurrentSegment]:
        return await current_segments(self.pool, customer_id)

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


class Change(NamedTuple):
    sequence: int
    customer_id: str
    transition: str
    at: datetime
    reason: str
    version: int


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
