"""PostgreSQL adapters: the asyncpg pool services use, and schema migrations through yoyo."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg
from yoyo import get_backend, read_migrations

log = logging.getLogger(__name__)
T = TypeVar("T")
TRANSIENT = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError)

MIGRATIONS = Path(__file__).parent / "migrations"


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
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


async def until_committed(write: Callable[[], Awaitable[T]], what: str, max_backoff: float = 5.0) -> T:
    """Retries a database write through connection failures until it commits.

    Stream processors must not let such an error escape: Faust acks a batch, or an event whose handler
    raised, and the records would be lost. Waiting holds the partition, which is what a projection
    that must not skip anything should do while its database is away.
    """
    backoff = 0.1
    while True:
        try:
            return await write()
        except TRANSIENT as error:
            log.warning(
                "database write failed; retrying", extra={"what": what, "error": repr(error), "in": backoff}
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)
