from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ServiceProcess, running


@pytest.fixture(scope="session")
def ingest_worker(kafka: object, test_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    """The Kafka-native ingest worker, started as `python -m services.ingest worker`."""
    yield from running("services.ingest", "ingest-worker", test_env, logs)


@pytest.fixture(scope="session")
def consent_filter(
    kafka: object, database: str, test_env: dict[str, str], logs: Path
) -> Iterator[ServiceProcess]:
    """The consent filter, started as `python -m services.consent worker`."""
    yield from running("services.consent", "consent-filter", test_env, logs)


@pytest.fixture(scope="session")
def timeline_projector(
    kafka: object, database: str, test_env: dict[str, str], logs: Path
) -> Iterator[ServiceProcess]:
    """The timeline projector, started as `python -m services.timeline worker`."""
    yield from running("services.timeline", "timeline-projector", test_env, logs)


@pytest.fixture(scope="session")
def identity_resolver(
    kafka: object, database: str, test_env: dict[str, str], logs: Path
) -> Iterator[ServiceProcess]:
    """The identity resolver, started as `python -m services.identity worker`."""
    yield from running("services.identity", "identity-resolver", test_env, logs)
