"""The metrics' names (shared/metrics.py's scheme), and the Grafana dashboard: generated from
deploy/grafana/dashboards.py, and querying only what exists."""

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import yaml
from prometheus_client import REGISTRY

import services.consent.metrics
import services.ingest.metrics
import services.ops.metrics
import services.segments.metrics
import services.timeline.metrics
import shared.metrics
from tests.helpers import ROOT

# Imported for the metrics they register.
EXPORTERS: tuple[ModuleType, ...] = (
    services.consent.metrics,
    services.ingest.metrics,
    services.ops.metrics,
    services.segments.metrics,
    services.timeline.metrics,
    shared.metrics,
)
METRIC = re.compile(r"\b(touchline[a-z0-9_:]*|process_[a-z_]+|up)\b(?=\s*[{\[)]|\s*$)")


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exported() -> set[str]:
    """Every series name this code exports (counters with _total, histograms with their parts), and the
    recording rules' names."""
    names = {sample.name for metric in REGISTRY.collect() for sample in metric.samples}
    names |= {
        f"{metric.name}{part}" for metric in REGISTRY.collect() for part in ("_bucket", "_sum", "_count")
    }
    names |= {metric.name for metric in REGISTRY.collect()}
    names |= {f"{metric.name}_total" for metric in REGISTRY.collect() if metric.type == "counter"}
    groups = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())["groups"]
    return names | {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_the_checked_in_dashboard_is_what_the_code_generates() -> None:
    generator = load(ROOT / "deploy/grafana/dashboards.py")
    assert (ROOT / "deploy/grafana/touchline.json").read_text() == generator.dashboard_json()


def test_every_query_names_only_series_touchline_exports() -> None:
    assert EXPORTERS
    generator = load(ROOT / "deploy/grafana/dashboards.py")
    document = json.loads((ROOT / "deploy/grafana/touchline.json").read_text())
    expressions = generator.queries(document)
    assert len(expressions) == 16  # four stages, four panels each
    known = exported()
    for expression in expressions:
        names = set(METRIC.findall(expression))
        assert names, expression
        assert names <= known, f"{sorted(names - known)} in {expression}"


def test_every_metric_follows_the_naming_scheme() -> None:
    services = {path.name for path in (ROOT / "services").iterdir() if (path / "__main__.py").exists()}
    scheme = re.compile(rf"touchline_({'|'.join(sorted(services | {'api'}))})_[a-z][a-z0-9_]*")
    ours = [metric for metric in REGISTRY.collect() if metric.name.startswith("touchline")]
    assert len(ours) > 30
    for metric in ours:
        assert scheme.fullmatch(metric.name), metric.name
        banned = {"customer_id", "customer", "path", "key", "event_id"}
        labels = {label for sample in metric.samples for label in sample.labels}
        assert not labels & banned, (metric.name, labels & banned)
