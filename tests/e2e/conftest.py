from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ServiceProcess, worker


@pytest.fixture(scope="session")
def ingest_worker(kafka: object, test_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    """The Kafka-native ingest worker, started as `python -m services.ingest worker`."""
    process = worker("services.ingest", "ingest-worker", test_env, logs).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def consent_filter(
    kafka: object, database: str, test_env: dict[str, str], logs: Path
) -> Iterator[ServiceProcess]:
    """The consent filter, started as `python -m services.consent worker`."""
    process = worker("services.consent", "consent-filter", test_env, logs).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def timeline_projector(
    kafka: object, database: str, test_env: dict[str, str], logs: Path
) -> Iterator[ServiceProcess]:
    """The timeline projector, started as `python -m services.timeline worker`."""
    process = worker("services.timeline", "timeline-projector", test_env, logs).start()
    yield process
    process.stop()
