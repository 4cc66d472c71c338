"""The Grafana dashboard, as code (grafana-foundation-sdk's typed builders): one row per stage, ingest ->
consent filter -> timeline / segments, each with its rate, lag, latency and errors.

    python deploy/grafana/dashboards.py   # rewrites deploy/grafana/touchline.json

The JSON is checked in (docker-compose provisions it); a test keeps it equal to this file's output and
checks that every query names only metrics Touchline exports or its recording rules define.
"""

import json
from pathlib import Path
from typing import NamedTuple

from grafana_foundation_sdk.builders import dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUTPUT = Path(__file__).with_name("touchline.json")
DATASOURCE = DataSourceRef(type_val="prometheus", uid="touchline-prometheus")


class StageRow(NamedTuple):
    title: str
    rate: str  # records per second
    lag: str  # records behind, per partition
    latency: str  # seconds
    latency_title: str
    errors: str
    errors_title: str


def _group(stage: str) -> str:
    return f'touchline_ops_consumer_lag_records{{group=~".*touchline-{stage}"}}'


STAGES = [
    StageRow(
        "Ingest",
        "sum(rate(touchline_ingest_events_accepted_total[1m]))",
        f"sum by (partition) ({_group('ingest')})",
        "histogram_quantile(0.99, sum by (le) ("
        'rate(touchline_api_request_seconds_bucket{service="ingest", route="/v1/events"}[5m])))',
        "p99 of POST /v1/events",
        'sum by (status) (rate(touchline_api_request_seconds_count{service="ingest"}[5m]))',
        "Requests per second, by status",
    ),
    StageRow(
        "Consent filter",
        "sum(rate(touchline_consent_batch_records_sum[1m]))",
        f"sum by (partition) ({_group('consent')})",
        "histogram_quantile(0.99, sum by (le) (rate(touchline_consent_filter_lag_seconds_bucket[5m])))",
        "p99 from the customer log to a decision",
        'touchline:dead_letters:increase5m{stage="consent"}',
        "Records parked on touch.dlq (5 min)",
    ),
    StageRow(
        "Timeline",
        "sum(rate(touchline_timeline_events_projected_total[1m]))",
        f"sum by (partition) ({_group('timeline')})",
        'touchline:end_to_end_seconds:p99_5m{stage="timeline"}',
        "p99 from received_at to the timeline row",
        'touchline:dead_letters:increase5m{stage="timeline"}',
        "Records parked on touch.dlq (5 min)",
    ),
    StageRow(
        "Segments",
        "sum(rate(touchline_segments_batch_size_sum[1m]))",
        f"sum by (partition) ({_group('segments')})",
        'touchline:end_to_end_seconds:p99_5m{stage="segments"}',
        "p99 from received_at to segment.membership",
        'touchline:dead_letters:increase5m{stage="segments"}',
        "Records parked on touch.dlq (5 min)",
    ),
]


def _panel(title: str, expression: str, unit: str, legend: str = "") -> timeseries.Panel:
    query = prometheus.Dataquery().expr(expression).legend_format(legend or "__auto").ref_id("A")
    return (
        timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).height(7).span(6).with_target(query)
    )


def build() -> dashboard.Dashboard:
    board = (
        dashboard.Dashboard("Touchline pipeline")
        .uid("touchline-pipeline")
        .tags(["touchline"])
        .refresh("5s")
        .time("now-30m", "now")
    )
    for stage in STAGES:
        board = (
            board.with_row(dashboard.Row(stage.title))
            .with_panel(_panel("Records per second", stage.rate, "ops"))
            .with_panel(_panel("Lag (records behind)", stage.lag, "short", "partition {{partition}}"))
            .with_panel(_panel(stage.latency_title, stage.latency, "s"))
            .with_panel(
                _panel(
                    stage.errors_title,
                    stage.errors,
                    "short",
                    "{{status}}" if "status" in stage.errors else "",
                )
            )
        )
    return board


def dashboard_json() -> str:
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def queries(document: dict[str, object]) -> list[str]:
    panels = document.get("panels", [])
    assert isinstance(panels, list)
    return [target["expr"] for panel in panels for target in panel.get("targets", []) if "expr" in target]


if __name__ == "__main__":
    OUTPUT.write_text(dashboard_json())
