"""The local Prometheus: its configuration covers every process, and every alert is tested and documented.

promtool (Debian's prometheus package; make test provisions it) checks the configuration and the rules
and runs the rules' unit tests in deploy/prometheus/tests/.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import ROOT, deploy_processes

PROMETHEUS = ROOT / "deploy/prometheus"
PROMTOOL = shutil.which("promtool")


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool not found: run 'bash deploy/local/prometheus.sh provision' (make test does)"
    return subprocess.run([PROMTOOL, *arguments], capture_output=True, text=True, check=False, cwd=PROMETHEUS)


def generated_config(tmp_path: Path) -> Path:
    result = subprocess.run(
        [sys.executable, str(PROMETHEUS / "scrape_config.py")], capture_output=True, text=True, check=True
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(result.stdout)
    return path


def alerts() -> list[str]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_process_of_deploy_processes_is_a_scrape_target(tmp_path: Path) -> None:
    config = yaml.safe_load(generated_config(tmp_path).read_text())
    configs = config["scrape_configs"][0]["static_configs"]
    assert [c["labels"]["process"] for c in configs] == [p.name for p in deploy_processes()]
    addresses = [c["targets"][0] for c in configs]
    assert len(set(addresses)) == len(addresses)  # two processes never share a metrics port


def test_the_generated_configuration_and_the_rules_check(tmp_path: Path) -> None:
    checked = promtool("check", "config", str(generated_config(tmp_path)))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_fires_and_stays_quiet_as_its_unit_test_says() -> None:
    tested = promtool("test", "rules", "tests/alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test_and_a_runbook_section() -> None:
    tests = yaml.safe_load((PROMETHEUS / "tests/alerts_test.yml").read_text())["tests"]
    checks = [check for test in tests for check in test["alert_rule_test"]]
    tested = {check["alertname"] for check in checks if check["exp_alerts"]}
    quiet = {check["alertname"] for check in checks if not check["exp_alerts"]}
    runbook = (ROOT / "deploy/RUNBOOK.md").read_text()
    for alert in alerts():
        assert alert in tested, f"{alert} has no promtool test that makes it fire"
        assert alert in quiet, f"{alert} has no promtool test where it stays quiet"
        assert f"## {alert}" in runbook, f"{alert} has no section in deploy/RUNBOOK.md"


def test_the_compose_configuration_is_the_generated_one() -> None:
    generated = subprocess.run(
        [sys.executable, str(PROMETHEUS / "scrape_config.py"), "--compose"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (PROMETHEUS / "compose.yml").read_text() == generated.stdout, "rerun scrape_config.py --compose"
