"""Fixtures shared by every test layer.

Tests share the broker and the PostgreSQL cluster with a `make run` stack, never its data: each pytest
session gets its own topic prefix and its own database, both removed at the end.
"""

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from shared.db import migrate
from shared.settings import TouchlineSettings
from tests.helpers import ServiceProcess, delete_topics_with_prefix, running

pytest_plugins = ["tests.alerting"]  # the alerting fixtures: a worker, a collector, a real Prometheus

TEST_API_KEYS = {
    "test-writer": {"source": "test-shop", "scopes": ["events:write"]},
    "test-reader": {"source": "test-crm", "scopes": ["timeline:read", "consent:read", "segments:read"]},
    "test-dpo": {"source": "test-dpo", "scopes": ["consent:write", "consent:read"]},
    "test-marketer": {"source": "test-marketing", "scopes": ["segments:admin", "segments:read"]},
    "test-steward": {"source": "test-steward", "scopes": ["identities:admin", "timeline:read"]},
    "test-front-office": {
        "source": "test-front-office",
        "scopes": ["timeline:read", "consent:read", "consent:write", "segments:read", "segments:admin"],
    },
    "test-timeline-only": ["timeline:read"],
    "test-nothing": [],
}
SESSION_PREFIX = f"test-{uuid.uuid4().hex[:8]}."
ADMIN_DSN = os.environ.get("TOUCHLINE_PG_DSN", "postgresql://postgres@127.0.0.1:55432/touchline").rsplit(
    "/", 1
)[0]
TEST_DATABASE = f"touchline_test_{SESSION_PREFIX[5:13]}"


@pytest.fixture(scope="session")
def test_env() -> Iterator[dict[str, str]]:
    """The environment a service under test runs with: the session's topics and database."""
    env = {
        "TOUCHLINE_TOPIC_PREFIX": SESSION_PREFIX,
        "TOUCHLINE_PG_DSN": f"{ADMIN_DSN}/{TEST_DATABASE}",
        "TOUCHLINE_API_KEYS": json.dumps(TEST_API_KEYS),
        "TOUCHLINE_KAFKA_BOOTSTRAP": os.environ.get("TOUCHLINE_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
    }
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield env
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def settings(test_env: dict[str, str]) -> TouchlineSettings:
    return TouchlineSettings()


@pytest.fixture(scope="session")
async def kafka(settings: TouchlineSettings) -> AsyncIterator[TouchlineSettings]:
    """The registry's topics under the session prefix, deleted afterwards."""
    from shared.kafka import ensure_topics

    await ensure_topics(settings)
    yield settings
    await delete_topics_with_prefix(settings.kafka_bootstrap, SESSION_PREFIX)


@pytest.fixture
async def own_topics(kafka: TouchlineSettings) -> AsyncIterator[TouchlineSettings]:
    """The registry's topics under a prefix of this test's own, deleted afterwards: for a test that reads a
    topic to its end, which on the session's topics another test's open transaction (a worker killed
    mid-batch holds one until it times out) can hold back from read_committed readers."""
    from shared.kafka import ensure_topics

    own = TouchlineSettings(topic_prefix=f"own-{uuid.uuid4().hex[:8]}.")
    await ensure_topics(own)
    yield own
    await delete_topics_with_prefix(own.kafka_bootstrap, own.topic_prefix)


@pytest.fixture(scope="session")
async def database(settings: TouchlineSettings) -> AsyncIterator[str]:
    """A migrated database of this session's own; its DSN."""
    admin = await asyncpg.connect(f"{ADMIN_DSN}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{TEST_DATABASE}"')
    finally:
        await admin.close()
    dsn = settings.pg_dsn.get_secret_value()
    migrate(dsn)
    yield dsn
    admin = await asyncpg.connect(f"{ADMIN_DSN}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def unique() -> str:
    """A fresh id fragment, so tests sharing one broker and database never see each other's data."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where processes started by tests write their logs; failing tests name the file."""
    return Path(tmp_path_factory.mktemp("logs"))


@pytest.fixture(scope="session")
def segment_evaluator(
    kafka: object, database: str, test_env: dict[str, str], logs: Path
) -> Iterator[ServiceProcess]:
    """The segment evaluator, started as `python -m services.segments worker`.

    One per session, shared by the e2e and fault tests: the fault test kills and restarts this very
    process, so no second evaluator in the group keeps processing while it is down.
    """
    yield from running("services.segments", "segment-evaluator", test_env, logs)
