"""PostgreSQL adapters: the asyncpg pool services use, and schema migrations through yoyo."""

from pathlib import Path

import asyncpg
from yoyo import get_backend, read_migrations

MIGRATIONS = Path(__file__).parent / "migrations"


# A statement or connection attempt that hangs (a half-open socket, a server stuck in recovery) fails after
# this and is classified UNAVAILABLE, rather than holding a request or a partition forever.
COMMAND_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0


async def _nothing_to_reset(connection: asyncpg.Connection) -> None:
    """Touchline keeps no session state: advisory locks are transaction-scoped, nothing LISTENs or SETs,
    and the timeline's staging table empties on commit. So the default reset query, one more round trip
    (and statement for PostgreSQL) on every release, has nothing to undo; asyncpg still rolls back a
    transaction left open before calling this."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=COMMAND_TIMEOUT_SECONDS,
        timeout=CONNECT_TIMEOUT_SECONDS,
        reset=_nothing_to_reset,
    )
    assert pool is not None  # asyncpg returns None only when used as an un-awaited context manager
    return pool


async def answers(pool: asyncpg.Pool) -> bool:
    """Whether the database answers a query: the readiness check of every store."""
    try:
        return await pool.fetchval("SELECT true") is True
    except (OSError, asyncpg.PostgresError):
        return False


def migrate(dsn: str, source: Path = MIGRATIONS) -> list[str]:
    """Apply the migrations not applied yet, under yoyo's lock; returns their ids."""
    backend = get_backend(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    migrations = read_migrations(str(source))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [migration.id for migration in pending]
