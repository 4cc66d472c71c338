"""The local Prometheus configuration, generated from deploy/processes.txt so that no process is missed:
one scrape target per process, at the metrics port its own settings give it (a line's VAR=value
settings included), labelled with the process name and its stage.

    python deploy/prometheus/scrape_config.py [PROCESSES_FILE] > prometheus.yml
"""

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/alerts.yml"
SCRAPE_INTERVAL = "5s"


class Target(NamedTuple):
    process: str
    stage: str  # the service a process belongs to: ingest, consent, timeline, segments
    address: str


@contextmanager
def environment(settings: dict[str, str]) -> Iterator[None]:
    previous = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def target_of(name: str, module: str, command: str, settings: dict[str, str]) -> Target:
    """Where a process serves /metrics: an API on its HTTP port, a worker on its metrics port."""
    stage = module.split(".")[1]
    with environment(settings):
        get_settings = importlib.import_module(f"{module}.settings").get_settings
        configured = type(get_settings())()  # read afresh, with this line's settings
    port = getattr(configured, f"{stage}_port" if command == "api" else f"{stage}_worker_metrics_port")
    host = getattr(configured, f"{stage}_host")
    return Target(name, stage, f"{host}:{port}")


def targets(processes: Path) -> list[Target]:
    found = []
    for line in processes.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, module, command, _, *settings = line.split()
            found.append(target_of(name, module, command, dict(item.split("=", 1) for item in settings)))
    return found


def config(processes: Path) -> dict[str, object]:
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "touchline",
                "scrape_timeout": "4s",
                "static_configs": [
                    {
                        "targets": [target.address],
                        "labels": {"process": target.process, "stage": target.stage},
                    }
                    for target in targets(processes)
                ],
            }
        ],
    }


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "deploy/processes.txt"
    sys.stdout.write(yaml.safe_dump(config(source), sort_keys=False))
