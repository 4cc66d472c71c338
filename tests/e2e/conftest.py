from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ServiceProcess


@pytest.fixture(scope="session")
def ingest_worker(
    kafka: object, test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """The Kafka-native ingest worker, started as `python -m services.ingest worker`."""
    log = Path(tmp_path_factory.mktemp("logs")) / "ingest-worker.log"
    worker = ServiceProcess(
        "services.ingest", "worker", test_env | {"TOUCHLINE_INGEST_WORKER_METRICS_PORT": "0"}, log
    )
    worker.start()
    yield worker
    worker.stop()
