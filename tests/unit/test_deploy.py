"""docker-compose.yml and the local stack stay in step with the code."""

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.helpers import deploy_processes

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def processes() -> list[tuple[str, str, str]]:
    return [(process.name, process.module, process.command) for process in deploy_processes()]


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    # Located, not imported: check-jsonschema's CLI module needs a newer click than faust allows.
    package = importlib.util.find_spec("check_jsonschema")
    assert package is not None
    assert package.submodule_search_locations is not None
    vendored = Path(package.submodule_search_locations[0]) / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(vendored.read_text())
    jsonschema.validate(compose(), schema)


@pytest.mark.parametrize(("name", "module", "command"), processes())
def test_every_process_has_its_compose_service(name: str, module: str, command: str) -> None:
    service = compose()["services"][name]
    assert service["command"] == ["python", "-m", module, command]


@pytest.mark.parametrize(("name", "module", "command"), processes())
def test_every_process_is_restarted_and_health_checked_in_compose(
    name: str, module: str, command: str
) -> None:
    service = compose()["services"][name]
    assert service["restart"] == "unless-stopped"
    probe = service["healthcheck"]["test"]
    assert probe[:5] == ["CMD", "python", "-m", "shared", "probe"]
    # APIs answer readiness, workers their metrics endpoint.
    path = "/readyz" if command == "api" else "/metrics"
    assert probe[5].endswith(path)


def test_compose_publishes_on_loopback_and_holds_no_secret() -> None:
    services = compose()["services"]
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published
    assert all(port.startswith("${TOUCHLINE_BIND:-127.0.0.1}:") for port in published)
    text = (ROOT / "docker-compose.yml").read_text()
    assert "scopes" not in text  # API keys come from the environment or .env
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${TOUCHLINE_PG_PASSWORD:?")


def test_every_service_package_with_a_command_line_is_deployed() -> None:
    modules = {module for _, module, _ in processes()}
    packages = {f"services.{path.parent.name}" for path in (ROOT / "services").glob("*/__main__.py")}
    assert packages <= modules


def test_compose_runs_the_kafka_version_the_local_stack_runs() -> None:
    local = re.search(r"TOUCHLINE_KAFKA_VERSION:-([\d.]+)", (ROOT / "deploy/local/common.sh").read_text())
    assert local is not None
    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{local.group(1)}"
