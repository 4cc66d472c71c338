"""PostgreSQL adapters: the asyncpg pool services use, and schema migrations through yoyo."""

from pathlib import Path

import asyncpg
from yoyo import get_backend, read_migrations

MIGRATIONS = Path(__file__).parent / "migrations"


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
    assert pool is not None  # asyncpg returns None only when used as an un-awaited context manager
    return pool


def migrate(dsn: str, source: Path = MIGRATIONS) -> list[str]:
    """Apply the migrations not applied yet, under yoyo's lock; returns their ids."""
    backend = get_backend(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
    migrations = read_migrations(str(source))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [migration.id for migration in pending]
