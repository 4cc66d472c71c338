"""The consent audit trail in PostgreSQL.

Idempotent by ON CONFLICT (change_id): the filter may write the same change again after a restart.
The audit trail is also the filter's durable state: a customer's recent changes with their log offsets.
"""

from collections.abc import Sequence

import asyncpg

from services.consent.domain import CHANGES_KEPT_PER_PURPOSE, ConsentState, RecordedChange, state_of
from shared.db import answers
from shared.events import ConsentChange, ConsentStatus, Purpose
from shared.identities import may_be_absorbed
from shared.profiles import latest_consent, profile_ids


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


_RECORD = """
INSERT INTO consent_history
    (change_id, purpose, status, changed_at, source, erasure, log_offset, customer_id, log_partition)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::boolean[],
                     $7::bigint[], $8::text[], $9::integer[])
ON CONFLICT (change_id) DO NOTHING
"""
# Only the newest changes per purpose matter to the filter: older ones collapse into one (domain.py).
_RECENT = """
SELECT customer_id, purpose, status, log_offset FROM (
    SELECT customer_id, purpose, status, log_offset,
           row_number() OVER (PARTITION BY customer_id, purpose ORDER BY log_offset DESC) AS newest
    FROM consent_history WHERE customer_id = ANY($1::text[])
) recent WHERE newest <= $2
"""


class ConsentStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def survivor(self, customer_id: str) -> str:
        """Consent is the person's: an id an identity merge absorbed speaks for the profile absorbing it.
        A known customer's id never is absorbed, so it costs no query (consent changes are frequent)."""
        if not may_be_absorbed(customer_id):
            return customer_id
        return (await profile_ids(self._pool, customer_id)).survivor

    async def record(self, changes: Sequence[tuple[ConsentChange, int, int]]) -> None:
        """Audit rows for (change, log partition, log offset), in one statement."""
        if not changes:
            return
        columns = list(
            zip(
                *(
                    (
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
                    for change, partition, offset in changes
                ),
                strict=True,
            )
        )
        await self._pool.execute(_RECORD, *map(list, columns))

    async def states(self, customer_ids: Sequence[str]) -> dict[str, ConsentState]:
        """The filter's state of each customer, from their newest stored changes (none: an empty state)."""
        rows = await self._pool.fetch(_RECENT, list(customer_ids), CHANGES_KEPT_PER_PURPOSE + 1)
        changes: dict[str, list[tuple[Purpose, ConsentStatus, int]]] = {c: [] for c in customer_ids}
        for row in rows:
            changes[row["customer_id"]].append(
                (Purpose(row["purpose"]), ConsentStatus(row["status"]), row["log_offset"])
            )
        return {customer: state_of(entries) for customer, entries in changes.items()}

    async def latest_per_purpose(self, customer_id: str) -> list[RecordedChange]:
        return [_recorded(row) for row in await latest_consent(self._pool, customer_id)]

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
