"""The identity graph in PostgreSQL: one transaction per batch, a few statements each.

Idempotent by its progress: a batch's links, changes, redirects and resolutions are written together,
keyed by the touch's offset or change id, so a batch written again changes nothing (ON CONFLICT).
"""

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg
import orjson

from services.identity.domain import Change, Graph, Identifier, split_profile
from shared.db import answers
from shared.events import IdentityChangeKind as ChangeKind
from shared.events import SplitRequested
from shared.identities import CUSTOMER_ID
from shared.profiles import ABSORBED_BY, PROFILE_IDS, profile_ids


class Decided(NamedTuple):
    """One touch's resolution as the resolver decided it, with what it needs to be written."""

    offset: int
    event_id: str
    profile: str
    changes: list[Change]
    at: datetime
    identifiers: Sequence[Identifier] = ()  # what it carried, strongest first


_OWNERS = """
SELECT l.kind, l.value, l.profile_id FROM identity_links l
JOIN unnest($1::text[], $2::text[]) AS named(kind, value) USING (kind, value)
"""
_HELD = "SELECT kind, value, profile_id FROM identity_links WHERE profile_id = ANY($1::text[])"
_RESOLVED = """
SELECT r.log_offset, r.event_id, r.profile_id FROM identity_resolutions r
WHERE r.log_offset >= $1 ORDER BY r.log_offset
"""
_CHANGES_FROM = """
SELECT change_id, change, profile_id, other_profile_id, kind, value, reason, log_offset
FROM identity_changes WHERE log_offset >= $1 ORDER BY log_offset, change_id
"""
_LINK = """
INSERT INTO identity_links (kind, value, profile_id, linked_at, caused_by)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
ON CONFLICT (kind, value) DO UPDATE SET profile_id = excluded.profile_id
"""
_MOVE = "UPDATE identity_links SET profile_id = $2 WHERE profile_id = $1"
_REDIRECT = """
INSERT INTO identity_redirects (absorbed, survivor) VALUES ($1, $2)
ON CONFLICT (absorbed) DO UPDATE SET survivor = excluded.survivor
"""
_FLATTEN = "UPDATE identity_redirects SET survivor = $2 WHERE survivor = $1"
_CHANGE = """
INSERT INTO identity_changes
    (change_id, log_offset, change, profile_id, other_profile_id, kind, value, reason, caused_by, at)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::timestamptz[])
ON CONFLICT (change_id) DO NOTHING
"""
_RESOLVE = """
INSERT INTO identity_resolutions (log_offset, event_id, profile_id, identifiers)
SELECT o, e, p, string_to_array(i, chr(31))
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS r(o, e, p, i)
ON CONFLICT (log_offset) DO NOTHING
"""
_SPLIT_BEFORE = "SELECT profile_id, split_off, moved FROM identity_splits WHERE log_offset = $1"
_CARRIED = """
SELECT log_offset, event_id, profile_id, identifiers FROM identity_resolutions
WHERE profile_id = ANY($1::text[]) AND $2 = ANY(identifiers) ORDER BY log_offset
"""
_SPLIT = (
    """UPDATE identity_links SET profile_id = $3, linked_at = $4, caused_by = $5
    WHERE kind = $1 AND value = $2""",
    "DELETE FROM identity_redirects WHERE absorbed = $1",
    "UPDATE identity_resolutions SET profile_id = $2 WHERE log_offset = ANY($1::bigint[])",
    """INSERT INTO identity_changes
        (change_id, log_offset, change, profile_id, other_profile_id, kind, value, caused_by, at)
    VALUES ($1, $2, 'split', $3, $4, $5, $6, $7, $8) ON CONFLICT (change_id) DO NOTHING""",
    "INSERT INTO identity_splits (log_offset, profile_id, split_off, moved) VALUES ($1, $2, $3, $4)",
)


_HOLDER = "SELECT profile_id FROM identity_links WHERE kind = $1 AND value = $2"
_PROFILE_LINKS = """
SELECT kind, value, linked_at, caused_by FROM identity_links WHERE profile_id = $1 ORDER BY kind, value
"""
_HISTORY = """
SELECT change, profile_id, other_profile_id, kind, value, reason, caused_by, at, log_offset
FROM identity_changes
WHERE (profile_id = ANY($1::text[]) OR other_profile_id = ANY($1::text[])) AND change <> 'linked'
   OR (profile_id = ANY($1::text[]) AND change = 'linked')
ORDER BY log_offset DESC, change_id DESC LIMIT $2
"""


_ERASED_BEFORE = "SELECT absorbed FROM identity_erasures WHERE log_offset = $1"
_FORGET = (
    "DELETE FROM identity_links WHERE profile_id = ANY($1::text[])",
    "DELETE FROM identity_changes WHERE profile_id = ANY($1::text[]) OR other_profile_id = ANY($1::text[])",
    "DELETE FROM identity_resolutions WHERE profile_id = ANY($1::text[])",
    "DELETE FROM identity_redirects WHERE survivor = ANY($1::text[]) OR absorbed = ANY($1::text[])",
)
_ERASED = "INSERT INTO identity_erasures (log_offset, absorbed) VALUES ($1, $2) ON CONFLICT DO NOTHING"


class Split(NamedTuple):
    """A split carried out: `identifier` left `profile` for `split_off`, and these touches went with it."""

    profile: str
    split_off: str
    moved: list[tuple[int, str, str]]  # inbound offset, event_id, the profile it had been resolved to


def _carried(identifier: Identifier) -> str:
    return f"{identifier[0]}:{identifier[1]}"


def _identifier(carried: str) -> Identifier:
    kind, _, value = carried.partition(":")
    return kind, value


class ProfileIdentities(NamedTuple):
    profile_id: str
    identifiers: list[asyncpg.Record]
    absorbed: list[str]
    history: list[asyncpg.Record]


def change_id(event_id: str, position: int) -> str:
    return f"{event_id}:{position}"


class IdentityStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def graph_of(self, identifiers: set[Identifier]) -> Graph:
        """The named identifiers' holders and everything those hold: all a batch's decisions read."""
        kinds, values = zip(*identifiers, strict=True) if identifiers else ((), ())
        async with self._pool.acquire() as connection:
            owners = await connection.fetch(_OWNERS, list(kinds), list(values))
            customers = {value for kind, value in identifiers if kind == CUSTOMER_ID}
            profiles = {row["profile_id"] for row in owners} | customers
            held = await connection.fetch(_HELD, sorted(profiles))
        graph = Graph()
        for row in held:
            identifier = (row["kind"], row["value"])
            graph.owner[identifier] = row["profile_id"]
            graph.held.setdefault(row["profile_id"], set()).add(identifier)
        return graph

    async def decided_from(self, offset: int) -> dict[int, tuple[str, list[Change]]]:
        """Resolutions already written at or past `offset` (a batch whose Kafka commit did not happen)."""
        async with self._pool.acquire() as connection:
            resolved = await connection.fetch(_RESOLVED, offset)
            changes = await connection.fetch(_CHANGES_FROM, offset)
        decided: dict[int, tuple[str, list[Change]]] = {
            row["log_offset"]: (row["profile_id"], []) for row in resolved
        }
        for row in changes:
            decided[row["log_offset"]][1].append(
                Change(
                    ChangeKind(row["change"]),
                    row["profile_id"],
                    (row["kind"], row["value"]),
                    row["other_profile_id"],
                    row["reason"],
                )
            )
        return decided

    async def write(self, batch: Sequence[Decided]) -> None:
        """A batch's resolutions and the graph they leave, all or nothing."""
        links = [(d, c) for d in batch for c in d.changes if c.kind == ChangeKind.LINKED]
        merges = [c for d in batch for c in d.changes if c.kind == ChangeKind.MERGED and c.other]
        changes = [(d, n, c) for d in batch for n, c in enumerate(d.changes)]
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                _LINK,
                [c.identifier[0] for _, c in links],
                [c.identifier[1] for _, c in links],
                [c.profile for _, c in links],
                [d.at for d, _ in links],
                [d.event_id for d, _ in links],
            )
            for merge in merges:
                await connection.execute(_MOVE, merge.other, merge.profile)
                await connection.execute(_FLATTEN, merge.other, merge.profile)
                await connection.execute(_REDIRECT, merge.other, merge.profile)
            await connection.execute(
                _CHANGE,
                [change_id(d.event_id, n) for d, n, _ in changes],
                [d.offset for d, _, _ in changes],
                [c.kind.value for _, _, c in changes],
                [c.profile for _, _, c in changes],
                [c.other for _, _, c in changes],
                [c.identifier[0] for _, _, c in changes],
                [c.identifier[1] for _, _, c in changes],
                [c.reason for _, _, c in changes],
                [d.event_id for d, _, _ in changes],
                [d.at for d, _, _ in changes],
            )
            await connection.execute(
                _RESOLVE,
                [d.offset for d in batch],
                [d.event_id for d in batch],
                [d.profile for d in batch],
                ["\x1f".join(_carried(i) for i in d.identifiers) for d in batch],
            )

    async def survivor(self, profile: str) -> str:
        """The profile that holds `profile`'s identifiers now: itself, unless a merge absorbed it."""
        return (await profile_ids(self._pool, profile)).survivor

    async def holder(self, kind: str, value: str) -> str | None:
        if kind == CUSTOMER_ID:
            return await self.survivor(value)
        holder: str | None = await self._pool.fetchval(_HOLDER, kind, value)
        return holder

    async def identities(self, profile: str, history_limit: int) -> ProfileIdentities | None:
        """A profile's identifiers, the profiles it absorbed, and its newest links, merges and conflicts."""
        survivor, absorbed = await profile_ids(self._pool, profile)
        async with self._pool.acquire() as connection:
            links = await connection.fetch(_PROFILE_LINKS, survivor)
            history = await connection.fetch(_HISTORY, [survivor, *absorbed], history_limit)
        if not links and not history:
            return None
        return ProfileIdentities(survivor, links, absorbed, history)

    async def erase(self, offset: int, profile: str) -> list[str]:
        """Forgets the profile and those merged into it; returns those, as first erased at `offset`."""
        async with self._pool.acquire() as connection, connection.transaction():
            done = await connection.fetchval(_ERASED_BEFORE, offset)
            if done is not None:
                return list(done)
            absorbed = [row[0] for row in await connection.fetch(ABSORBED_BY, [profile])]
            for statement in _FORGET:
                await connection.execute(statement, [profile, *absorbed])
            await connection.execute(_ERASED, offset, absorbed)
            return absorbed

    async def split(
        self,
        offset: int,
        request: SplitRequested,
        goes_with: Callable[[Sequence[Identifier], Identifier], bool],
    ) -> Split | None:
        """Moves the identifier, and the touches that go with it (`goes_with`), to the profile it would
        have made alone, as first carried out at `offset`; None when it is not the profile's to split."""
        identifier = (request.identifier_kind, request.identifier_value)
        async with self._pool.acquire() as connection, connection.transaction():
            done = await connection.fetchrow(_SPLIT_BEFORE, offset)
            if done is not None:
                moved = [(o, e, p) for o, e, p in orjson.loads(done["moved"])]
                return Split(done["profile_id"], done["split_off"], moved)
            row = await connection.fetchrow(PROFILE_IDS, request.customer_id)
            survivor, absorbed = (row["id"], list(row["absorbed"])) if row else (request.customer_id, [])
            split_off = split_profile(survivor, identifier)
            if split_off is None or await connection.fetchval(_HOLDER, *identifier) != survivor:
                return None
            carried = await connection.fetch(_CARRIED, [survivor, *absorbed], _carried(identifier))
            moved = [
                (r["log_offset"], r["event_id"], r["profile_id"])
                for r in carried
                if goes_with([_identifier(i) for i in r["identifiers"]], identifier)
            ]
            at, cause = request.requested_at, request.split_id
            link, unredirect, resolve, change, record = _SPLIT
            await connection.execute(link, *identifier, split_off, at, cause)
            await connection.execute(unredirect, split_off)
            await connection.execute(resolve, [o for o, _, _ in moved], split_off)
            await connection.execute(
                change, change_id(cause, 0), offset, split_off, survivor, *identifier, cause, at
            )
            await connection.execute(record, offset, survivor, split_off, orjson.dumps(moved).decode())
            return Split(survivor, split_off, moved)

    async def ready(self) -> bool:
        return await answers(self._pool)
