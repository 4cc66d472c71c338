"""The alerts, end to end through a real Prometheus: a frozen worker makes TouchlineProcessDown fire, one
killed and restarted again and again makes TouchlineProcessRestarting fire. Prometheus is configured by
the generator `make run` uses (deploy/prometheus/scrape_config.py) and loads deploy/prometheus/alerts.yml;
the test waits for the alert's state through Prometheus's HTTP API, it does not time it.
"""

import asyncio
import importlib.util
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import SESSION_PREFIX
from tests.helpers import ROOT, WORKER_ENV, ServiceProcess, delete_topics_with_prefix

METRICS_PORT, PROMETHEUS_PORT = 19612, 19690
PROCESS = "alerting-projector"
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
    """A timeline projector of its own (own topics, so its group is its own), its metrics on a known port."""
    prefix = f"{SESSION_PREFIX}alerts."
    env = test_env | WORKER_ENV | {"TOUCHLINE_TOPIC_PREFIX": prefix}
    env |= {"TOUCHLINE_TIMELINE_WORKER_METRICS_PORT": str(METRICS_PORT)}
    process = ServiceProcess("services.timeline", "worker", env, logs / f"{PROCESS}.log").start()
    try:
        yield process
    finally:
        process.resume()
        process.stop()
        asyncio.run(delete_topics_with_prefix(test_env["TOUCHLINE_KAFKA_BOOTSTRAP"], prefix))


@pytest.fixture
def prometheus(projector: ServiceProcess, tmp_path: Path) -> Iterator[str]:
    processes = tmp_path / "processes.txt"
    line = f"{PROCESS} services.timeline worker - TOUCHLINE_TIMELINE_WORKER_METRICS_PORT={METRICS_PORT}"
    processes.write_text(line + "\n")
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
    return httpx.get(f"{PROMETHEUS}{path}", params=params, timeout=5).json()["data"]


def target_health() -> str | None:
    try:
        targets = get("/api/v1/targets")["activeTargets"]
    except httpx.HTTPError:
        return None
    return next((t["health"] for t in targets if t["labels"]["process"] == PROCESS), None)


def alert_state(name: str) -> str | None:
    alerts = get("/api/v1/alerts")["alerts"]
    return next(
        (
            a["state"]
            for a in alerts
            if a["labels"]["alertname"] == name and a["labels"]["process"] == PROCESS
        ),
        None,
    )


def wait_until(done: Any, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"gave up waiting for {what} after {timeout} s"
        time.sleep(1)


def test_a_frozen_worker_fires_process_down_and_repeated_restarts_fire_restarting(
    projector: ServiceProcess, prometheus: str
) -> None:
    assert alert_state("TouchlineProcessDown") is None
    projector.pause()  # SIGSTOP: alive to the supervisor, silent to Prometheus
    wait_until(lambda: alert_state("TouchlineProcessDown") == "firing", "TouchlineProcessDown to fire")
    projector.resume()
    wait_until(lambda: alert_state("TouchlineProcessDown") is None, "TouchlineProcessDown to resolve")

    assert alert_state("TouchlineProcessRestarting") is None
    for _ in range(3):
        restart_and_wait_for_its_scrape(projector)
    wait_until(
        lambda: alert_state("TouchlineProcessRestarting") == "firing", "TouchlineProcessRestarting to fire"
    )


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
