"""The read port for what one service shows of another's projections: a customer's latest consent
changes (the consent service's audit trail), their current segments (the segments service's members)
and which profile ids are one person (the identity service's merges).

The owners read through the same queries, so these tables' shape for readers is kept in one place and the
timeline's profile never imports the consent or segments services.
"""

from datetime import datetime
from typing import NamedTuple, Protocol

import asyncpg

from shared.events import ConsentStatus, Purpose

LATEST_CONSENT = """
SELECT DISTINCT ON (purpose) change_id, purpose, status, changed_at, source, erasure, log_offset
FROM consent_history WHERE customer_id = $1
ORDER BY purpose, log_offset DESC
"""


# The profile an id belongs to now (itself, unless a merge absorbed it), and the ids it absorbed.
PROFILE_IDS = """
WITH survivor AS (
    SELECT coalesce((SELECT survivor FROM identity_redirects WHERE absorbed = $1), $1) AS id
)
SELECT survivor.id, array(
    SELECT absorbed FROM identity_redirects r WHERE r.survivor = survivor.id ORDER BY absorbed
) AS absorbed FROM survivor
"""
ABSORBED_BY = "SELECT absorbed FROM identity_redirects WHERE survivor = ANY($1::text[])"


class ProfileIds(NamedTuple):
    survivor: str
    absorbed: list[str]


class CurrentSegment(NamedTuple):
    segment_id: str
    name: str
    version: int
    entered_at: datetime


class ProfileReads(Protocol):
    async def explicit_consent(self, customer_id: str) -> dict[Purpose, ConsentStatus]:
        """The status of each purpose the customer decided explicitly (others follow the defaults)."""
        ...

    async def current_segments(self, customer_id: str) -> list[CurrentSegment]:
        """The segments the customer is in now, by id."""
        ...

    async def profile_ids(self, customer_id: str) -> ProfileIds:
        """The person `customer_id` is part of: the surviving profile and the profiles merged into it."""
        ...


async def latest_consent(pool: asyncpg.Pool, customer_id: str) -> list[asyncpg.Record]:
    """The newest change of each purpose the customer decided."""
    return await pool.fetch(LATEST_CONSENT, customer_id)


async def current_segments(pool: asyncpg.Pool, customer_id: str) -> list[CurrentSegment]:
    rows = await pool.fetch(
        "SELECT m.segment_id, d.name, m.version, m.entered_at FROM segment_members m"
        " JOIN segment_definitions d USING (segment_id) WHERE m.customer_id = $1 ORDER BY m.segment_id",
        customer_id,
    )
    return [CurrentSegment(*row) for row in rows]


async def profile_ids(pool: asyncpg.Pool, customer_id: str) -> ProfileIds:
    row = await pool.fetchrow(PROFILE_IDS, customer_id)
    return ProfileIds(row["id"], list(row["absorbed"])) if row else ProfileIds(customer_id, [])


class PostgresProfileReads:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def explicit_consent(self, customer_id: str) -> dict[Purpose, ConsentStatus]:
        rows = await latest_consent(self.pool, customer_id)
        return {Purpose(row["purpose"]): ConsentStatus(row["status"]) for row in rows}

    async def current_segments(self, customer_id: str) -> list[CurrentSegment]:
        return await current_segments(self.pool, customer_id)

    async def profile_ids(self, customer_id: str) -> ProfileIds:
        return await profile_ids(self.pool, customer_id)
