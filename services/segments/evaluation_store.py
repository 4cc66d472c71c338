"""The evaluator's store: customer states (digest rows, members), the change outbox and tracking offsets.

Exactly-once by tracking rows: the evaluator advances `segment_offsets` in the same transaction as the
states, members and changes a batch produced, and skips records below them when Kafka redelivers.
Changes wait in `segment_changes` (an outbox, see outbox.py) until the relay has them acknowledged.

A digest is stored as its recent touches in the customer's row and older ones in rows of their own
(`segment_points`, see digest.py), so a batch writes a bounded amount per customer whatever their history.
"""

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeAlias

import asyncpg
import orjson

from services.segments.digest import Digest
from services.segments.domain import Change, CustomerState, MergeNotice, Outcome
from services.segments.evaluation import MICROS, Point
from shared.events import MembershipTransition
from shared.failures import Unavailable

Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
# Where a cached digest can stand in for reading the customer's rows at their epoch (None: read them).
Known = Callable[[str, int], Digest | None]

_STATE = "SELECT customer_id, evaluated_at, revision, recent, epoch FROM segment_customers "
_LOCK = _STATE + "WHERE customer_id = ANY($1::text[]) ORDER BY customer_id FOR UPDATE"
_LOCK_DUE = _STATE + "WHERE next_change_at <= $1 ORDER BY next_change_at LIMIT $2 FOR UPDATE SKIP LOCKED"
_LOCK_STALE = _STATE + "WHERE revision < $1 LIMIT $2 FOR UPDATE SKIP LOCKED"
_MEMBERS_OF = """
SELECT customer_id, segment_id, version FROM segment_members WHERE customer_id = ANY($1::text[])
"""
_POINTS_OF = "SELECT customer_id, points FROM segment_points WHERE customer_id = ANY($1::text[])"
_OFFSETS = """
SELECT partition, next_offset FROM segment_offsets WHERE topic = $1 AND partition = ANY($2::int[])
ORDER BY partition FOR UPDATE
"""
# Never backwards: a redelivered batch can end below what an earlier batch already applied.
_ADVANCE_OFFSETS = """
INSERT INTO segment_offsets (topic, partition, next_offset)
SELECT $1, * FROM unnest($2::int[], $3::bigint[])
ON CONFLICT (topic, partition) DO UPDATE
SET next_offset = greatest(segment_offsets.next_offset, excluded.next_offset)
"""
_UPDATE_CUSTOMERS = """
UPDATE segment_customers c SET recent = u.recent, evaluated_at = u.evaluated_at, revision = u.revision,
    next_change_at = u.next_change_at
FROM unnest($1::text[], $2::bytea[], $3::bigint[], $4::bigint[], $5::bigint[])
    AS u(customer_id, recent, evaluated_at, revision, next_change_at)
WHERE c.customer_id = u.customer_id
"""
# A customer nobody had a row for when it was locked: should another worker have created one since (a
# merge into a profile whose partition this is not), the batch is run again over that row.
_INSERT_CUSTOMERS = """
INSERT INTO segment_customers (customer_id, recent, evaluated_at, revision, next_change_at)
SELECT * FROM unnest($1::text[], $2::bytea[], $3::bigint[], $4::bigint[], $5::bigint[])
ON CONFLICT (customer_id) DO NOTHING
RETURNING customer_id
"""
_MERGE_SIDE = """
INSERT INTO segment_merges (absorbed, survivor, sealed, allowed) VALUES ($1, $2, $3, $4)
ON CONFLICT (absorbed) DO UPDATE SET sealed = segment_merges.sealed OR excluded.sealed,
    allowed = coalesce(excluded.allowed, segment_merges.allowed)
RETURNING sealed, allowed, merged
"""
# Where a merge into `$1` lands now: through every merge carried out since, allowed only if each was.
_HOLDER = """
WITH RECURSIVE holders (profile, allowed, depth) AS (
    SELECT $1::text, true, 0
    UNION ALL
    SELECT m.survivor, h.allowed AND m.allowed, h.depth + 1
    FROM segment_merges m JOIN holders h ON m.absorbed = h.profile
    WHERE m.merged AND h.depth < 64
)
SELECT profile, allowed FROM holders ORDER BY depth DESC LIMIT 1
"""
_MERGED = "UPDATE segment_merges SET merged = true WHERE absorbed = $1"
_UNMERGED = "DELETE FROM segment_merges WHERE absorbed = $1"
_NEW_EPOCH = "UPDATE segment_customers SET epoch = epoch + 1 WHERE customer_id = $1"
_FORGET_MERGES = "DELETE FROM segment_merges WHERE absorbed = ANY($1::text[]) OR survivor = ANY($1::text[])"
_FORGET_CUSTOMERS = "DELETE FROM segment_customers WHERE customer_id = ANY($1::text[])"
_FORGET_POINTS = "DELETE FROM segment_points WHERE customer_id = ANY($1::text[])"
_EXPIRE_POINTS = """
DELETE FROM segment_points p USING unnest($1::text[], $2::bigint[]) AS e(customer_id, through)
WHERE p.customer_id = e.customer_id AND p.newest_at <= e.through
"""
_ADD_POINTS = """
INSERT INTO segment_points (customer_id, newest_at, points)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[])
"""
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


# An erased customer's membership history goes: published changes at once, pending ones (their exits
# among them) once the relay has published them (outbox.py).
_ERASE_PUBLISHED = "DELETE FROM segment_changes WHERE customer_id = ANY($1::text[]) AND published"
_ERASE_WHEN_PUBLISHED = """
UPDATE segment_changes SET erase_after_publish = true WHERE customer_id = ANY($1::text[]) AND NOT published
"""


class CreatedElsewhere(Unavailable):
    """Another worker created a customer's row while this transaction held none: run it again."""


def moment(micros: int) -> datetime:
    return datetime.fromtimestamp(micros // MICROS, UTC).replace(microsecond=micros % MICROS)


def encode_points(points: Sequence[Point]) -> bytes:
    return orjson.dumps([[p.at, p.key, p.type, p.channel, p.values] for p in points])


def decode_points(data: bytes) -> list[Point]:
    return [Point(at, key, kind, channel, values) for at, key, kind, channel, values in orjson.loads(data)]


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


class DigestWrites(NamedTuple):
    customers: list[tuple[str, bytes, int, int, int | None]]  # segment_customers rows
    forgotten: list[str]  # customers whose segment_points rows all go: forgotten, or forgotten and begun anew
    expired: list[tuple[str, int]]
    flushed: list[tuple[str, int, bytes]]


def digest_writes(
    before: Mapping[str, CustomerState],
    outcomes: Mapping[str, Outcome],
    next_change_at: Callable[[CustomerState], int | None],
) -> DigestWrites:
    """The customer and segment_points rows a batch's outcomes write; each digest takes its save."""
    writes = DigestWrites([], [], [], [])
    for customer, outcome in outcomes.items():
        previous, state = before.get(customer), outcome.state
        if previous is not None and (state is None or state.points is not previous.points):
            writes.forgotten.append(customer)  # a new digest: consent was withdrawn on the way
        if state is None:
            continue
        recent, flushed, expired_through = state.points.saved()
        row = (customer, encode_points(recent), state.evaluated_at, state.revision, next_change_at(state))
        writes.customers.append(row)
        if expired_through is not None:
            writes.expired.append((customer, expired_through))
        if flushed:
            writes.flushed.append((customer, max(p.at for p in flushed), encode_points(flushed)))
    return writes


def _columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


class Evaluation:
    """One evaluator transaction: lock customers, then save what the domain decided for them."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.epochs: dict[str, int] = {}  # of the rows read, for the cache

    async def offsets(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        rows = await self.connection.fetch(_OFFSETS, topic, list(partitions))
        return {row["partition"]: row["next_offset"] for row in rows}

    async def advance_offsets(self, topic: str, offsets: Mapping[int, int]) -> None:
        await self.connection.execute(_ADVANCE_OFFSETS, topic, list(offsets), list(offsets.values()))

    async def lock(self, customer_ids: Sequence[str], known: Known) -> dict[str, CustomerState]:
        """The customers' states, locked; waits for another transaction holding one of them."""
        return await self._load(known, _LOCK, list(customer_ids))

    async def lock_due(self, now: int, limit: int, known: Known) -> dict[str, CustomerState]:
        """Customers whose next boundary has passed; ones another transaction holds are left to it."""
        return await self._load(known, _LOCK_DUE, now, limit)

    async def lock_stale(self, revision: int, limit: int, known: Known) -> dict[str, CustomerState]:
        """Customers not yet evaluated against definitions revision `revision` (the backfill)."""
        return await self._load(known, _LOCK_STALE, revision, limit)

    async def _load(self, known: Known, query: str, *arguments: Any) -> dict[str, CustomerState]:
        rows = await self.connection.fetch(query, *arguments)
        if not rows:
            return {}
        members: dict[str, dict[str, int]] = {row["customer_id"]: {} for row in rows}
        for member in await self.connection.fetch(_MEMBERS_OF, list(members)):
            members[member["customer_id"]][member["segment_id"]] = member["version"]
        self.epochs |= {row["customer_id"]: row["epoch"] for row in rows}
        digests = {
            customer: digest
            for customer in members
            if (digest := known(customer, self.epochs[customer])) is not None
        }
        digests |= await self._digests(
            {r["customer_id"]: r["recent"] for r in rows if r["customer_id"] not in digests}
        )
        return {
            row["customer_id"]: CustomerState(
                row["customer_id"],
                digests[row["customer_id"]],
                members[row["customer_id"]],
                row["evaluated_at"],
                row["revision"],
            )
            for row in rows
        }

    async def _digests(self, recent: Mapping[str, bytes]) -> dict[str, Digest]:
        """Digests read back: the customers' rows of older touches, and their recent ones."""
        older: dict[str, list[Point]] = {customer: [] for customer in recent}
        if recent:
            for row in await self.connection.fetch(_POINTS_OF, list(recent)):
                older[row["customer_id"]] += decode_points(row["points"])
        return {customer: Digest(older[customer], decode_points(recent[customer])) for customer in recent}

    async def save(
        self,
        before: Mapping[str, CustomerState],
        outcomes: Mapping[str, Outcome],
        next_change_at: Callable[[CustomerState], int | None],
        received_at: Mapping[int, datetime],
    ) -> None:
        """Writes outcomes; `received_at` maps an input's instant to its touch's arrival, for latency."""
        forgotten = [customer for customer, o in outcomes.items() if o.state is None and customer in before]
        members = [member_writes(before.get(customer), o) for customer, o in outcomes.items()]
        digests = digest_writes(before, outcomes, next_change_at)
        changes = [_change_row(c, received_at) for o in outcomes.values() for c in o.changes]
        await self._write(_UPDATE_CUSTOMERS, [row for row in digests.customers if row[0] in before])
        created = [row for row in digests.customers if row[0] not in before]
        if created and len(await self.connection.fetch(_INSERT_CUSTOMERS, *_columns(created))) < len(created):
            raise CreatedElsewhere("a customer's row was created by another worker meanwhile")
        await self._write(_FORGET_CUSTOMERS, [(customer,) for customer in forgotten])
        await self._write(_FORGET_POINTS, [(customer,) for customer in digests.forgotten])
        await self._write(_EXPIRE_POINTS, digests.expired)
        await self._write(_ADD_POINTS, digests.flushed)
        await self._write(_DELETE_MEMBERS, [r for w in members for r in w.left])
        await self._write(_UPSERT_MEMBERS, [r for w in members for r in w.entered])
        await self._write(_UPDATE_VERSIONS, [r for w in members for r in w.versions])
        await self._write(_INSERT_CHANGES, changes)

    async def erase_history(self, customers: Collection[str]) -> None:
        """The right to be forgotten reaches the change history too (after this batch's changes)."""
        await self._write(_ERASE_PUBLISHED, [(customer,) for customer in customers])
        await self._write(_ERASE_WHEN_PUBLISHED, [(customer,) for customer in customers])
        await self._write(_FORGET_MERGES, [(customer,) for customer in customers])

    async def merge_side(self, notice: MergeNotice) -> MergeNotice | None:
        """Records one side of a merge; the merge to carry out now, when this was the second side."""
        allowed = None if notice.sealed else notice.allowed
        row = await self.connection.fetchrow(
            _MERGE_SIDE, notice.absorbed, notice.survivor, notice.sealed, allowed
        )
        assert row is not None
        if row["merged"] or not row["sealed"] or row["allowed"] is None:
            return None
        return notice._replace(sealed=True, allowed=row["allowed"])

    async def holder(self, survivor: str) -> tuple[str, bool]:
        """The profile a merge into `survivor` reaches now, and whether every merge on the way allowed it."""
        row = await self.connection.fetchrow(_HOLDER, survivor)
        assert row is not None
        return row["profile"], row["allowed"]

    async def merged(self, absorbed: str, holder: str) -> None:
        """The merge is carried out; every other worker's cached digest of the holder is stale."""
        await self.connection.execute(_MERGED, absorbed)
        await self.connection.execute(_NEW_EPOCH, holder)

    async def unmerged(self, split_off: str) -> None:
        """A split gave `split_off` its own life again: merges into it stop redirecting."""
        await self.connection.execute(_UNMERGED, split_off)

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


class EvaluationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def evaluation(self) -> AsyncIterator[Evaluation]:
        async with self.pool.acquire() as connection, connection.transaction():
            yield Evaluation(connection)

    async def state_size(self) -> tuple[int, int]:
        """Customers with a state, and the bytes their digests take."""
        row = await self.pool.fetchrow(
            "SELECT (SELECT count(*) FROM segment_customers),"
            " (SELECT coalesce(sum(pg_column_size(recent)), 0) FROM segment_customers)"
            " + (SELECT coalesce(sum(pg_column_size(points)), 0) FROM segment_points)"
        )
        assert row is not None
        return row[0], row[1]
