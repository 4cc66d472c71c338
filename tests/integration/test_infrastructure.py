"""The real broker and database the project provisions: a touch through Kafka, rows through PostgreSQL."""

from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from shared.db import create_pool, migrate
from shared.events import TouchEvent
from shared.kafka import create_consumer, create_producer, ensure_topics
from shared.serialization import decode_customer_log, encode
from shared.settings import TouchlineSettings
from shared.topics import ALL_TOPICS, CUSTOMER_LOG


async def test_a_touch_event_goes_through_the_broker_and_back(kafka: TouchlineSettings, unique: str) -> None:
    event = TouchEvent(
        event_id=f"e-{unique}",
        customer_id=f"c-{unique}",
        type="purchase",
        channel="store",
        occurred_at=datetime(2026, 11, 1, 9, 30, tzinfo=UTC),
        properties={"amount": 42.5, "items": ["a", "b"]},
        received_at=datetime.now(UTC),
        source="integration",
    )
    topic = kafka.topic(CUSTOMER_LOG)
    producer = create_producer(kafka)
    await producer.start()
    try:
        metadata = await producer.send_and_wait(topic, encode(event), key=event.customer_id.encode())
    finally:
        await producer.stop()
    consumer = create_consumer(kafka, group_id=f"test-{unique}")
    consumer.assign([metadata.topic_partition])
    await consumer.start()
    try:
        consumer.seek(metadata.topic_partition, metadata.offset)
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert decode_customer_log(record.value) == event
    assert record.key == event.customer_id.encode()


async def test_topics_are_created_once_with_their_registered_shape(kafka: TouchlineSettings) -> None:
    assert await ensure_topics(kafka) == []
    producer = create_producer(kafka)
    await producer.start()
    try:
        for spec in ALL_TOPICS:
            assert len(await producer.partitions_for(kafka.topic(spec))) == spec.partitions
    finally:
        await producer.stop()


async def test_rows_are_written_and_read_through_the_pool(database: str, unique: str) -> None:
    pool = await create_pool(database)
    try:
        async with pool.acquire() as connection:
            await connection.execute(
                f"CREATE TABLE probe_{unique} (id text PRIMARY KEY, seen_at timestamptz)"
            )
            at = datetime(2026, 11, 22, 8, tzinfo=UTC)
            await connection.execute(f"INSERT INTO probe_{unique} VALUES ($1, $2)", "a", at)
            row = await connection.fetchrow(f"SELECT * FROM probe_{unique}")
            assert row is not None
            assert tuple(row) == ("a", at)
    finally:
        await pool.close()


async def test_migrations_apply_once_and_are_tracked(database: str, unique: str, tmp_path: Path) -> None:
    (tmp_path / f"0001_probe_{unique}.sql").write_text(f"CREATE TABLE migrated_{unique} (id int);\n")
    assert migrate(database, tmp_path) == [f"0001_probe_{unique}"]
    assert migrate(database, tmp_path) == []
    connection = await asyncpg.connect(database)
    try:
        assert await connection.fetchval(f"SELECT count(*) FROM migrated_{unique}") == 0
    finally:
        await connection.close()
