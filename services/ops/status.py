"""`python -m services.ops status`: the pipeline at a glance, from Prometheus.

Every process up or down with its restarts in the last hour; per stage the records it moves per second,
its lag (from the ops collector) and, where measured, the p99 from a touch's arrival to its result.
Live in a terminal, refreshed every second; `--once` prints one frame, `--once --json` one JSON object.
"""

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

# What each stage moves, per second: ingest's accepted touches, the filter's and the projections' records.
RATES = {
    "ingest": "sum(rate(touchline_ingest_events_accepted_total[1m]))",
    "consent": "sum(rate(touchline_consent_batch_records_sum[1m]))",
    "timeline": "sum(rate(touchline_timeline_batch_size_sum[1m]))",
    "segments": "sum(rate(touchline_segments_batch_size_sum[1m]))",
}
LAG = 'sum by (group) (touchline_ops_consumer_lag_records{group=~".*touchline-(.+)"})'
P99 = "touchline:end_to_end_seconds:p99_5m"
UP = 'up{job="touchline"}'
RESTARTS = 'changes(process_start_time_seconds{job="touchline"}[1h])'


class Process(NamedTuple):
    name: str
    up: bool
    restarts: int


class StageStatus(NamedTuple):
    name: str
    per_second: float | None
    lag: int | None
    p99_seconds: float | None


class Status(NamedTuple):
    processes: list[Process]
    stages: list[StageStatus]


Samples = list[dict[str, Any]]


def status_of(
    up: Samples, restarts: Samples, rates: Mapping[str, Samples], lags: Samples, p99: Samples
) -> Status:
    """Prometheus's answers to the queries above, as rows (pure: tested without a Prometheus)."""
    restarted = {s["metric"]["process"]: int(float(s["value"][1])) for s in restarts}
    processes = sorted(
        Process(s["metric"]["process"], s["value"][1] == "1", restarted.get(s["metric"]["process"], 0))
        for s in up
    )
    lag = {s["metric"]["group"].rsplit("touchline-", 1)[-1]: int(float(s["value"][1])) for s in lags}
    slowest = {s["metric"]["stage"]: float(s["value"][1]) for s in p99 if s["value"][1] != "NaN"}
    stages = [
        StageStatus(stage, float(rate[0]["value"][1]) if rate else None, lag.get(stage), slowest.get(stage))
        for stage, rate in rates.items()
    ]
    return Status(processes, stages)


def fetch(prometheus: str) -> Status:
    with httpx.Client(base_url=prometheus, timeout=3) as client:

        def query(expression: str) -> Samples:
            answer = client.get("/api/v1/query", params={"query": expression}).json()
            return list(answer["data"]["result"])

        return status_of(
            query(UP),
            query(RESTARTS),
            {stage: query(q) for stage, q in RATES.items()},
            query(LAG),
            query(P99),
        )


def as_json(status: Status) -> str:
    return json.dumps(
        {
            "processes": [p._asdict() for p in status.processes],
            "stages": [s._asdict() for s in status.stages],
        }
    )


def _number(value: float | int | None, unit: str = "") -> str:
    return (
        "-" if value is None else f"{value:,.0f}{unit}" if isinstance(value, int) else f"{value:,.1f}{unit}"
    )


def render(status: Status, prometheus: str) -> Group:
    processes = Table(title=f"Touchline processes (from {prometheus})", expand=True)
    for column in ("process", "state", "restarts (1 h)"):
        processes.add_column(column)
    for process in status.processes:
        state = "[green]up[/]" if process.up else "[bold red]DOWN[/]"
        processes.add_row(process.name, state, str(process.restarts))
    stages = Table(title="Stages", expand=True)
    for column in ("stage", "records/s", "lag (records)", "p99 received -> result"):
        stages.add_column(column, justify="right" if column != "stage" else "left")
    for stage in status.stages:
        p99 = None if stage.p99_seconds is None else stage.p99_seconds * 1000
        stages.add_row(stage.name, _number(stage.per_second), _number(stage.lag), _number(p99, " ms"))
    return Group(processes, stages)


def show(prometheus: str, once: bool, as_json_once: bool) -> int:
    """Prints the status (once, or live until interrupted); 1 when Prometheus cannot be reached."""
    console = Console()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per query would bury the view
    try:
        if once:
            status = fetch(prometheus)
            if as_json_once:
                sys.stdout.write(as_json(status) + "\n")
            else:
                console.print(render(status, prometheus))
            return 0
        with Live(render(fetch(prometheus), prometheus), console=console, refresh_per_second=2) as live:
            while True:
                time.sleep(1)
                live.update(render(fetch(prometheus), prometheus))
    except httpx.HTTPError as error:
        console.print(
            f"[red]Prometheus at {prometheus} does not answer ({type(error).__name__}); is `make run` up?"
        )
        return 1
    except KeyboardInterrupt:
        return 0
