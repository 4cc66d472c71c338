"""The evaluator's store against the real PostgreSQL: digests saved as added rows, read back whole."""

import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import pytest

from services.segments.digest import FLUSH_AT, Digest
from services.segments.domain import Input, MergeNotice, Outcome, decide, next_change_at
from services.segments.evaluation import MICROS, Definitions, Point
from services.segments.evaluation_store import CreatedElsewhere, EvaluationStore, encode_points
from shared.db import MIGRATIONS, create_pool, migrate
from tests.conftest import ADMIN_DSN

HORIZON = 100 * MICROS
START = 1_800_000_000 * MICROS
DEFINITIONS = Definitions()


def nothing_cached(customer_id: str, epoch: int) -> Digest | None:
    return None


@pytest.fixture
async def store(database: str) -> AsyncIterator[EvaluationStore]:
    pool = await create_pool(database)
    try:
        yield EvaluationStore(pool)
    finally:
        await pool.close()


def view(key: int, seconds: int) -> Point:
    return Point(START + seconds * MICROS, key, "view", "web", {})


async def evaluate(store: EvaluationStore, customer: str, inputs: Sequence[Input]) -> Outcome:
    """One batch for one customer, through the store as the evaluator runs it (nothing cached)."""
    async with store.evaluation() as evaluation:
        before = await evaluation.lock([customer], nothing_cached)
        outcome = decide(before.get(customer), customer, inputs, DEFINITIONS, HORIZON)
        await evaluation.save(before, {customer: outcome}, lambda s: next_change_at(s, DEFINITIONS), {})
    return outcome


async def stored_keys(store: EvaluationStore, customer: str) -> set[int]:
    async with store.evaluation() as evaluation:
        states = await evaluation.lock([customer], nothing_cached)
    return {point.key for point in states[customer].points.points} if customer in states else set()


async def point_rows(store: EvaluationStore, customer: str) -> int:
    async with store.pool.acquire() as connection:
        rows = await connection.fetchval(
            "SELECT count(*) FROM segment_points WHERE customer_id = $1", customer
        )
    assert isinstance(rows, int)
    return rows


async def test_recent_touches_move_to_a_row_of_their_own_and_a_reload_holds_every_touch(
    store: EvaluationStore, unique: str
) -> None:
    customer = f"c-{unique}"
    await evaluate(store, customer, [Input(START, view(1, 0)), Input(START + 1, view(2, 1))])
    await evaluate(store, customer, [Input(START + 2 * MICROS, view(3, 2)), Input(START + 3, view(1, 0))])
    assert await stored_keys(store, customer) == {1, 2, 3}
    assert await point_rows(store, customer) == 0  # three touches: all in the customer's row
    for key in range(4, FLUSH_AT + 10):
        await evaluate(store, customer, [Input(START + key * MICROS, view(key, key))])
    assert await stored_keys(store, customer) == set(range(1, FLUSH_AT + 10))
    assert await point_rows(store, customer) == 1  # the first FLUSH_AT, never rewritten again


async def test_a_withdrawal_then_a_touch_in_one_batch_keeps_only_the_new_touch(
    store: EvaluationStore, unique: str
) -> None:
    customer = f"c-{unique}"
    await evaluate(store, customer, [Input(START + key, view(key, 0)) for key in range(FLUSH_AT)])
    assert await point_rows(store, customer) == 1
    await evaluate(store, customer, [Input(START + 5 * MICROS, None), Input(START + 6 * MICROS, view(99, 0))])
    assert await stored_keys(store, customer) == {99}
    assert await point_rows(store, customer) == 0


async def test_a_withdrawal_deletes_every_row(store: EvaluationStore, unique: str) -> None:
    customer = f"c-{unique}"
    await evaluate(store, customer, [Input(START + key, view(key, 0)) for key in range(FLUSH_AT + 1)])
    await evaluate(store, customer, [Input(START + 5 * MICROS, None)])
    assert await point_rows(store, customer) == 0
    assert await stored_keys(store, customer) == set()


async def test_rows_that_expired_whole_are_deleted(store: EvaluationStore, unique: str) -> None:
    customer = f"c-{unique}"
    await evaluate(store, customer, [Input(START + key, view(key, 0)) for key in range(FLUSH_AT)])
    await evaluate(store, customer, [Input(START + MICROS, view(1000, 1))])
    assert await point_rows(store, customer) == 1
    # 150 s later every earlier touch is past the 100 s horizon.
    await evaluate(store, customer, [Input(START + 150 * MICROS, view(2000, 150))])
    assert await point_rows(store, customer) == 0
    assert await stored_keys(store, customer) == {2000}


async def test_a_row_another_worker_created_meanwhile_is_never_overwritten(
    store: EvaluationStore, unique: str
) -> None:
    """Two workers may create one profile's row at once (its owner on a touch, the other side's owner on a
    merge): the one that finds it created refuses to write and runs its batch again."""
    customer = f"c-{unique}"
    async with store.evaluation() as evaluation:
        before = await evaluation.lock([customer], nothing_cached)
        outcome = decide(before.get(customer), customer, [Input(START, view(1, 0))], DEFINITIONS, HORIZON)
        await evaluate(store, customer, [Input(START + 1, view(2, 0))])  # another worker, committed first
        with pytest.raises(CreatedElsewhere):
            await evaluation.save(before, {customer: outcome}, lambda s: next_change_at(s, DEFINITIONS), {})
    assert await stored_keys(store, customer) == {2}


async def test_a_merge_is_due_once_both_sides_are_in_and_lands_where_the_survivor_went_since(
    store: EvaluationStore, unique: str
) -> None:
    first, second, person = f"p1-{unique}", f"p2-{unique}", f"c-{unique}"
    async with store.evaluation() as evaluation:
        assert await evaluation.merge_side(MergeNotice(second, first, sealed=False, allowed=True)) is None
        # first is absorbed into person, both sides in, and carried out before second's own side arrives.
        assert await evaluation.merge_side(MergeNotice(first, person, sealed=True, allowed=True)) is None
        due = await evaluation.merge_side(MergeNotice(first, person, sealed=False, allowed=False))
        assert due == MergeNotice(first, person, sealed=True, allowed=False)
        await evaluation.merged(first, person)
        again = await evaluation.merge_side(MergeNotice(first, person, sealed=True, allowed=True))
        assert again is None, "a side redelivered after the merge changes nothing"
        due = await evaluation.merge_side(MergeNotice(second, first, sealed=True, allowed=True))
        assert due == MergeNotice(second, first, sealed=True, allowed=True)
        # Into the profile holding first now, allowed only as far as every merge on the way was.
        assert await evaluation.holder(due.survivor) == (person, False)
        assert await evaluation.holder(person) == (person, True)


async def test_digests_stored_whole_before_migration_0004_are_read_back(tmp_path: Path, unique: str) -> None:
    """An upgrade keeps every customer's touches: 0004 keeps each old digest as the recent touches."""
    before = tmp_path / "before"
    before.mkdir()
    for migration in sorted(MIGRATIONS.glob("000[123]_*.sql")):
        shutil.copy(migration, before / migration.name)
    admin = await asyncpg.connect(f"{ADMIN_DSN}/postgres")
    database = f"touchline_upgrade_{unique}"
    await admin.execute(f'CREATE DATABASE "{database}"')
    try:
        dsn = f"{ADMIN_DSN}/{database}"
        migrate(dsn, before)
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(
                "INSERT INTO segment_customers VALUES ('c1', $1, 0, 0, NULL)",
                encode_points([view(1, 0), view(2, 30)]),
            )
        finally:
            await connection.close()
        migrate(dsn)
        pool = await create_pool(dsn)
        try:
            assert await stored_keys(EvaluationStore(pool), "c1") == {1, 2}
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()
