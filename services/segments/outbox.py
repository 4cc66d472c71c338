"""The change outbox: membership changes the evaluator decided, published in order by the relay.

Changes wait in `segment_changes` until Kafka has acknowledged them, so a crash between the two
re-publishes a change under the same change_id rather than losing it.
"""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import NamedTuple

import asyncpg


class PendingChange(NamedTuple):
    change_id: str
    segment_id: str
    version: int
    customer_id: str
    transition: str
    at: datetime
    reason: str
    received_at: datetime | None


# One statement: changes of customers erased meanwhile were kept only to be published, so they go; the
# others are marked. (The UPDATE sees the rows as before the DELETE, hence the NOT IN.)
_MARK_PUBLISHED = """
WITH gone AS (
    DELETE FROM segment_changes WHERE change_id = ANY($1::text[]) AND erase_after_publish RETURNING change_id
)
UPDATE segment_changes SET published = true
WHERE change_id = ANY($1::text[]) AND change_id NOT IN (SELECT change_id FROM gone)
"""


class ChangeOutbox:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

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
                await connection.execute(_MARK_PUBLISHED, [row["change_id"] for row in rows])
            return len(rows)
