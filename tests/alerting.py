"""Alerting fixtures: a worker of its own, an ops collector reading its lag, and a real Prometheus
configured by deploy/prometheus/scrape_config.py (scraping every second) with deploy/prometheus/alerts.yml
loaded; and helpers that read alert states through Prometheus's HTTP API. Used by tests/e2e/test_alerts.py
and, for the alerts that take minutes, by tests/faults/test_lag_alert.py (make faults).
"""

import asyncio
import importlib.util
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shared.topics import CUSTOMER_ALLOWED
from tests.conftest import SESSION_PREFIX
from tests.helpers import ROOT, WORKER_ENV, ServiceProcess, delete_topics_with_prefix, produce
from tests.segments_support import allowed_touch

METRICS_PORT, COLLECTOR_PORT, PROMETHEUS_PORT = 19612, 19615, 19690
PROCESS, COLLECTOR = "alerting-projector", "alerting-collector"
PREFIX = f"{SESSION_PREFIX}alerts."
PROMETHEUS = f"http://127.0.0.1:{PROMETHEUS_PORT}"


def load_scrape_config() -> Any:
    """deploy/prometheus/scrape_config.py's `config`: a script beside the deployment, not a package."""
    spec = importlib.util.spec_from_file_location(
        "scrape_config", ROOT / "deploy/prometheus/scrape_config.py"
    )
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.config


@pytest.fixture
def projector(kafka: object, database: str, test_env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    """A timeline projector of its own (own topics, so its group is its own), its metrics on a known port,
    and an ops collector reading that group's lag."""
    env = test_env | WORKER_ENV | {"TOUCHLINE_TOPIC_PREFIX": PREFIX}
    process = ServiceProcess(
        "services.timeline",
        "worker",
        env | {"TOUCHLINE_TIMELINE_WORKER_METRICS_PORT": str(METRICS_PORT)},
        logs / f"{PROCESS}.log",
    ).start()
    collector = ServiceProcess(
        "services.ops",
        "worker",
        env
        | {"TOUCHLINE_OPS_WORKER_METRICS_PORT": str(COLLECTOR_PORT), "TOUCHLINE_OPS_INTERVAL_SECONDS": "1"},
        logs / f"{COLLECTOR}.log",
    ).start()
    try:
        yield process
    finally:
        process.resume()
        process.stop()
        collector.stop()
        asyncio.run(delete_topics_with_prefix(test_env["TOUCHLINE_KAFKA_BOOTSTRAP"], PREFIX))


@pytest.fixture
def prometheus(projector: ServiceProcess, tmp_path: Path) -> Iterator[str]:
    processes = tmp_path / "processes.txt"
    processes.write_text(
        f"{PROCESS} services.timeline worker - TOUCHLINE_TIMELINE_WORKER_METRICS_PORT={METRICS_PORT}\n"
        f"{COLLECTOR} services.ops worker - TOUCHLINE_OPS_WORKER_METRICS_PORT={COLLECTOR_PORT}\n"
    )
    config = load_scrape_config()(processes)
    config["global"] |= {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["scrape_configs"][0]["scrape_timeout"] = "1s"
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    binary = shutil.which("prometheus")
    assert binary, "prometheus not found: run 'bash deploy/local/prometheus.sh provision' (make test does)"
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    try:
        wait_until(lambda: target_health() == "up", "the projector to be a healthy target")
        yield PROMETHEUS
    finally:
        server.terminate()
        server.wait(timeout=30)


def get(path: str, **params: str) -> Any:
    response = httpx.get(f"{PROMETHEUS}{path}", params=params, timeout=5)
    response.raise_for_status()  # 503 while Prometheus starts
    return response.json()["data"]


def target_health() -> str | None:
    try:
        targets = get("/api/v1/targets")["activeTargets"]
    except httpx.HTTPError:
        return None
    return next((t["health"] for t in targets if t["labels"]["process"] == PROCESS), None)


def alert_state(name: str, **labels: str) -> str | None:
    """The alert's state for this test's process, or for the labels given."""
    wanted = labels or {"process": PROCESS}
    alerts = get("/api/v1/alerts")["alerts"]
    return next(
        (
            a["state"]
            for a in alerts
            if a["labels"]["alertname"] == name and all(a["labels"].get(k) == v for k, v in wanted.items())
        ),
        None,
    )


def wait_until(done: Any, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"gave up waiting for {what} after {timeout} s"
        time.sleep(1)


def start_time() -> float | None:
    result = get("/api/v1/query", query=f'process_start_time_seconds{{process="{PROCESS}"}}')["result"]
    return float(result[0]["value"][1]) if result else None


def restart_and_wait_for_its_scrape(process: ServiceProcess) -> None:
    """SIGKILL and start again, then wait until Prometheus has scraped the new process's start time."""
    before = start_time()
    process.kill()
    process.start()
    wait_until(
        lambda: target_health() == "up" and start_time() not in (None, before), "a scrape of the restart"
    )


async def feed_the_frozen_input(bootstrap: str, bursts: int, pause: float) -> None:
    """Records the projector's input partition receives while it cannot read them: 600 a burst."""
    allowed = f"{PREFIX}{CUSTOMER_ALLOWED.name}"
    for burst in range(bursts):
        records: list[tuple[bytes | None, bytes | None]] = [
            allowed_touch("lagging", f"lag-{burst}-{n}", "page.viewed", datetime.now(UTC)) for n in range(600)
        ]
        await produce(bootstrap, allowed, records)
        await asyncio.sleep(pause)


LAGGING_GROUP = f"{PREFIX}touchline-timeline"
