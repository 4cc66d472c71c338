"""The consent audit trail in PostgreSQL.

Idempotent by ON CONFLICT (change_id): the filter may write the same change again after a restart.
"""

import asyncpg

from services.consent.domain import RecordedChange
from shared.db import answers
from shared.events import ConsentChange, ConsentStatus, Purpose


def _recorded(row: asyncpg.Record) -> RecordedChange:
    return RecordedChange(
        row["change_id"],
        Purpose(row["purpose"]),
        ConsentStatus(row["status"]),
        row["changed_at"],
        row["source"],
        row["erasure"],
        row["log_offset"],
    )


class ConsentStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, change: ConsentChange, partition: int, offset: int) -> None:
        await self._pool.execute(
            """
            INSERT INTO consent_history
                (change_id, purpose, status, changed_at, source, erasure, log_offset,
                 customer_id, log_partition)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (change_id) DO NOTHING
            """,
            change.change_id,
            change.purpose.value,
            change.status.value,
            change.changed_at,
            change.source,
            change.erasure,
            offset,
            change.customer_id,
            partition,
        )

    async def latest_per_purpose(self, customer_id: str) -> list[RecordedChange]:
        rows = await self._pool.fetch(
            """
            SELECT DISTINCT ON (purpose) change_id, purpose, status, changed_at, source, erasure, log_offset
            FROM consent_history WHERE customer_id = $1
            ORDER BY purpose, log_offset DESC
            """,
            customer_id,
        )
        return [_recorded(row) for row in rows]

    async def history(self, customer_id: str, limit: int, before_offset: int | None) -> list[RecordedChange]:
        """Newest first; `before_offset` continues a previous page."""
        rows = await self._pool.fetch(
            """
            SELECT change_id, purpose, status, changed_at, source, erasure, log_offset
            FROM consent_history WHERE customer_id = $1 AND ($2::bigint IS NULL OR log_offset < $2)
            ORDER BY log_offset DESC LIMIT $3
            """,
            customer_id,
            before_offset,
            limit,
        )
        return [_recorded(row) for row in rows]

    async def ready(self) -> bool:
        return await answers(self._pool)
