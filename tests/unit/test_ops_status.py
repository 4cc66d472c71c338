"""The status view's rows, from Prometheus answers as its HTTP API gives them."""

import json

from services.ops.status import Process, StageStatus, as_json, status_of


def sample(value: str, **labels: str) -> dict[str, object]:
    return {"metric": labels, "value": [1764690000.0, value]}


def test_processes_and_stages_from_prometheus_answers() -> None:
    status = status_of(
        up=[sample("1", process="timeline-api"), sample("0", process="consent-filter")],
        restarts=[sample("3", process="consent-filter")],
        rates={"ingest": [sample("2012.5")], "timeline": []},
        lags=[sample("12", group="touchline-timeline")],
        p99=[sample("0.42", stage="timeline"), sample("NaN", stage="segments")],
    )
    assert status.processes == [Process("consent-filter", False, 3), Process("timeline-api", True, 0)]
    assert status.stages == [
        StageStatus("ingest", 2012.5, None, None),
        StageStatus("timeline", None, 12, 0.42),
    ]
    assert json.loads(as_json(status))["processes"][0] == {
        "name": "consent-filter",
        "up": False,
        "restarts": 3,
    }


def test_a_prefixed_group_is_its_stage() -> None:
    status = status_of([], [], {"segments": []}, [sample("5", group="test-1.touchline-segments")], [])
    assert status.stages == [StageStatus("segments", None, 5, None)]
