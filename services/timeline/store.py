"""The timeline in PostgreSQL: batched, idempotent projection writes and the read path.

Idempotent by the key (customer_id, event_id) with ON CONFLICT DO NOTHING: a replayed or duplicated
event is stored, and counted in the profile, once. Offsets are committed by the processor only after
apply_batch's transaction commits.
"""

import re
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import asyncpg
import orjson

from services.timeline.domain import (
    ENVELOPE,
    IDENTIFY,
    BatchPlan,
    PageQuery,
    ProfileSummary,
    TimelineRow,
    Trait,
)
from shared.failures import Failure, classify, isolating, while_unavailable
from shared.profiles import ABSORBED_BY

Park = Callable[[TimelineRow, BaseException], Awaitable[None]]

_GENERATION = re.compile(r"timeline_g[0-9]+")
_STAGING_COLUMNS = (
    "customer_id",
    "occurred_at",
    "event_id",
    "type",
    "channel",
    "properties",
    "received_at",
    "source",
)

_PURCHASE_TOTALS = """count(*) FILTER (WHERE type = 'purchase'),
           coalesce(sum((properties->>'amount')::numeric)
                    FILTER (WHERE type = 'purchase' AND jsonb_typeof(properties->'amount') = 'number'), 0)"""
_INSERT_AND_SUMMARISE = (
    """
WITH inserted AS (
    INSERT INTO {g}.events
        (customer_id, occurred_at, event_id, type, channel, properties, received_at, source)
    SELECT customer_id, occurred_at, event_id, type, channel, properties::jsonb, received_at, source
    FROM timeline_staging
    ON CONFLICT (customer_id, event_id) DO NOTHING
    RETURNING customer_id, occurred_at, type, channel, properties
), profiles AS (
    INSERT INTO {g}.profiles AS p
    SELECT customer_id, min(occurred_at), max(occurred_at), count(*), """
    + _PURCHASE_TOTALS
    + """
    FROM inserted GROUP BY customer_id
    ON CONFLICT (customer_id) DO UPDATE SET
        first_seen = least(p.first_seen, excluded.first_seen),
        last_seen = greatest(p.last_seen, excluded.last_seen),
        event_count = p.event_count + excluded.event_count,
        purchase_count = p.purchase_count + excluded.purchase_count,
        purchase_amount = p.purchase_amount + excluded.purchase_amount
), counts AS (
    INSERT INTO {g}.profile_counts AS c
    SELECT customer_id, 'channel', channel, count(*) FROM inserted GROUP BY customer_id, channel
    UNION ALL
    SELECT customer_id, 'type', type, count(*) FROM inserted GROUP BY customer_id, type
    ON CONFLICT (customer_id, dimension, value) DO UPDATE SET count = c.count + excluded.count
)
SELECT count(*) FROM inserted
"""
)

# A split's touches leave their profiles; those profiles' summaries are counted again from what is left.
_DETACH = (
    "DELETE FROM {g}.events WHERE customer_id = ANY($1) AND event_id = ANY($2)",
    "DELETE FROM {g}.profiles WHERE customer_id = ANY($1)",
    "DELETE FROM {g}.profile_counts WHERE customer_id = ANY($1)",
    "INSERT INTO {g}.profiles SELECT customer_id, min(occurred_at), max(occurred_at), count(*), "
    + _PURCHASE_TOTALS
    + " FROM {g}.events WHERE customer_id = ANY($1) GROUP BY customer_id",
    "INSERT INTO {g}.profile_counts"
    " SELECT customer_id, 'channel', channel, count(*) FROM {g}.events WHERE customer_id = ANY($1)"
    " GROUP BY customer_id, channel"
    " UNION ALL SELECT customer_id, 'type', type, count(*) FROM {g}.events WHERE customer_id = ANY($1)"
    " GROUP BY customer_id, type",
)

_PAGE = """
SELECT event_id, customer_id, type, channel, occurred_at, properties::text AS properties, received_at, source
FROM {g}.events
WHERE customer_id = ANY($1::text[])
  AND ($2::timestamptz IS NULL OR (occurred_at, event_id) < ($2, $3::text))
  AND (cardinality($4::text[]) = 0 OR type = ANY($4))
  AND (cardinality($5::text[]) = 0 OR channel = ANY($5))
  AND ($6::timestamptz IS NULL OR occurred_at >= $6)
  AND ($7::timestamptz IS NULL OR occurred_at < $7)
ORDER BY occurred_at DESC, event_id DESC
LIMIT $8
"""


# Each trait's newest value over the person's identify touches: DISTINCT ON keeps the first row per key.
_TRAITS = """
SELECT DISTINCT ON (trait.key) trait.key, trait.value::text AS value, e.occurred_at, e.source
FROM {g}.events e, jsonb_each(e.properties) AS trait
WHERE e.customer_id = ANY($1::text[]) AND e.type = $2 AND trait.key <> $3
ORDER BY trait.key, e.occurred_at DESC, e.event_id DESC
"""
_PROFILE = """
SELECT min(first_seen) AS first_seen, max(last_seen) AS last_seen, sum(event_count)::bigint AS event_count,
       sum(purchase_count)::bigint AS purchase_count, sum(purchase_amount) AS purchase_amount
FROM {g}.profiles WHERE customer_id = ANY($1::text[])
"""


def _checked(generation: str) -> str:
    """Generation names are formatted into SQL, so only the shape the projector creates is allowed."""
    if not _GENERATION.fullmatch(generation):
        raise ValueError(f"not a timeline generation: {generation!r}")
    return generation


class TimelineStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def active_generation(self) -> str:
        return _checked(await self._pool.fetchval("SELECT generation FROM timeline_active"))

    async def apply_parking(self, plan: BatchPlan, park: Park, generation: str | None = None) -> int:
        """apply_batch, waiting out an unavailable database; when PostgreSQL refuses the batch's data (say,
        text it cannot hold), the erasures, then the rows with those it refuses found by halving and
        handed to `park`, the others stored. Returns rows stored."""
        try:
            return await while_unavailable(partial(self.apply_batch, plan, generation), "timeline batch")
        except Exception as error:
            if classify(error) is not Failure.DATA:
                raise  # a bug: the caller ends, nothing of this batch acknowledged
        erasures = BatchPlan(erase=plan.erase)
        await while_unavailable(partial(self.apply_batch, erasures, generation), "erasures")

        async def write(rows: Sequence[TimelineRow]) -> int:
            part = BatchPlan(rows={(row.customer_id, row.event_id): row for row in rows})
            return await self.apply_batch(part, generation)

        return await isolating(list(plan.rows.values()), write, park, "timeline rows")

    async def apply_batch(self, plan: BatchPlan, generation: str | None = None) -> int:
        """Deletes erased customers, then inserts new rows, in one transaction; returns rows stored.

        Without `generation` it writes to the active one, holding the pointer row FOR SHARE so that a
        rebuild's switch waits for this batch and the next batch writes to the new generation.
        """
        async with self._pool.acquire() as connection, connection.transaction():
            if generation is None:
                generation = await connection.fetchval("SELECT generation FROM timeline_active FOR SHARE")
            g = _checked(generation)
            if plan.erase:
                # A person's profile ids go together: the ones a merge joined to an erased one go too.
                erased = list(plan.erase)
                erased += [row[0] for row in await connection.fetch(ABSORBED_BY, erased)]
                for table in ("events", "profiles", "profile_counts"):
                    await connection.execute(f"DELETE FROM {g}.{table} WHERE customer_id = ANY($1)", erased)
            for detached in plan.detach:
                customers = list(detached.customer_ids)
                delete_events, *recount = _DETACH
                await connection.execute(delete_events.format(g=g), customers, list(detached.event_ids))
                for statement in recount:
                    await connection.execute(statement.format(g=g), customers)
            if not plan.rows:
                return 0
            await connection.execute(
                "CREATE TEMP TABLE IF NOT EXISTS timeline_staging (customer_id text, occurred_at timestamptz,"
                " event_id text, type text, channel text, properties text, received_at timestamptz,"
                " source text) ON COMMIT DELETE ROWS"
            )
            await connection.copy_records_to_table(
                "timeline_staging",
                records=list(plan.rows.values()),
                columns=_STAGING_COLUMNS,
            )
            stored: int = await connection.fetchval(_INSERT_AND_SUMMARISE.format(g=g))
            return stored

    async def page(self, query: PageQuery) -> list[TimelineRow] | None:
        """One page of a customer's timeline; None when nothing is held for them at all.

        Both questions are answered from one snapshot: asked separately, a batch committing between
        them made a customer look known yet empty.
        """
        async with (
            self._pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            generation = _checked(await connection.fetchval("SELECT generation FROM timeline_active"))
            rows = await self._page(connection, generation, query)
            if rows or query.after is not None:
                return rows
            known = await connection.fetchval(
                f"SELECT true FROM {generation}.profiles WHERE customer_id = ANY($1::text[]) LIMIT 1",
                list(query.customer_ids),
            )
            return rows if known else None

    async def _page(
        self,
        connection: "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]",
        generation: str,
        query: PageQuery,
    ) -> list[TimelineRow]:
        after = query.after
        rows = await connection.fetch(
            _PAGE.format(g=generation),
            list(query.customer_ids),
            after.occurred_at if after else None,
            after.event_id if after else None,
            sorted(query.types),
            sorted(query.channels),
            query.since,
            query.until,
            query.limit,
        )
        return [
            TimelineRow(
                row["customer_id"],
                row["occurred_at"],
                row["event_id"],
                row["type"],
                row["channel"],
                row["properties"],
                row["received_at"],
                row["source"],
            )
            for row in rows
        ]

    async def profile(self, customer_ids: tuple[str, ...]) -> ProfileSummary | None:
        """One person's summary over their profile ids (a merge joins them; each keeps its rows)."""
        g = await self.active_generation()
        ids = list(customer_ids)
        async with self._pool.acquire() as connection:
            row = await connection.fetchrow(_PROFILE.format(g=g), ids)
            if row is None or row["event_count"] is None:
                return None
            counts = await connection.fetch(
                f"SELECT dimension, value, sum(count)::bigint AS count FROM {g}.profile_counts"
                " WHERE customer_id = ANY($1::text[]) GROUP BY dimension, value",
                ids,
            )
            found = await connection.fetch(_TRAITS.format(g=g), ids, IDENTIFY, ENVELOPE)
        by: dict[str, dict[str, int]] = {"channel": {}, "type": {}}
        for count in counts:
            by[count["dimension"]][count["value"]] = count["count"]
        return ProfileSummary(
            row["first_seen"],
            row["last_seen"],
            row["event_count"],
            row["purchase_count"],
            row["purchase_amount"],
            by["channel"],
            by["type"],
            {
                row["key"]: Trait(orjson.loads(row["value"]), row["occurred_at"], row["source"])
                for row in found
            },
        )

    async def ready(self) -> bool:
        try:
            await self.active_generation()
        except (OSError, asyncpg.PostgresError):
            return False
        return True

    # Rebuild: a fresh generation filled beside the active one, then an atomic switch.

    async def create_generation(self) -> str:
        number = await self._pool.fetchval(
            "SELECT coalesce(max(substring(nspname FROM 'timeline_g([0-9]+)')::int), 0) + 1"
            " FROM pg_namespace WHERE nspname ~ '^timeline_g[0-9]+$'"
        )
        generation = f"timeline_g{number}"
        await self._pool.execute("SELECT timeline_create_generation($1)", generation)
        return generation

    async def switch_to(self, generation: str, catch_up: Callable[[], Awaitable[None]]) -> str:
        """Makes `generation` the active one; returns the previous. `catch_up` runs while the pointer is
        locked, so no live batch can land in the old generation after the rebuild's last read."""
        async with self._pool.acquire() as connection, connection.transaction():
            previous = _checked(
                await connection.fetchval("SELECT generation FROM timeline_active FOR UPDATE")
            )
            await catch_up()
            await connection.execute("UPDATE timeline_active SET generation = $1", _checked(generation))
        return previous

    async def drop_generation(self, generation: str) -> None:
        await self._pool.execute(f"DROP SCHEMA {_checked(generation)} CASCADE")
