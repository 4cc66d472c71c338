"""`make run`'s supervision: a process killed with SIGKILL is restarted, and `status` counts it."""

import asyncio
import os
import signal
import subprocess
from pathlib import Path

from tests.bench.ingest import free_port
from tests.helpers import ROOT, WORKER_ENV, eventually

SUPERVISE = ROOT / "deploy/local/supervise.sh"


def supervise(command: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", str(SUPERVISE), command], env=os.environ | env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def status(env: dict[str, str]) -> dict[str, list[str]]:
    """Each process's STATE, PID, UPTIME and RESTARTS columns."""
    lines = supervise("status", env).splitlines()[1:]
    return {line.split()[0]: line.split()[1:] for line in lines}


async def test_a_killed_worker_is_restarted_and_counted(
    test_env: dict[str, str], database: str, tmp_path: Path
) -> None:
    processes = tmp_path / "processes.txt"
    processes.write_text(
        "consent-api     services.consent api     http://127.0.0.1:${TOUCHLINE_CONSENT_PORT}/readyz\n"
        "consent-filter  services.consent worker  -\n"
    )
    env = (
        test_env
        | WORKER_ENV
        | {
            "TOUCHLINE_PROCESSES": str(processes),
            "TOUCHLINE_SERVICES_DIR": str(tmp_path / "services"),
            "TOUCHLINE_CONSENT_PORT": str(free_port()),
            # A short first run still counts as started, so the restart below is not a failed start.
            "TOUCHLINE_SUPERVISOR_START_SECONDS": "1",
        }
    )
    supervise("start", env)  # returns once the API answers its readiness URL
    try:
        before = await eventually(
            lambda: asyncio.to_thread(status, env), lambda now: now["consent-filter"][0] == "RUNNING"
        )
        assert before["consent-filter"][3] == "0"
        os.kill(int(before["consent-filter"][1]), signal.SIGKILL)
        after = await eventually(
            lambda: asyncio.to_thread(status, env),
            lambda now: (
                now["consent-filter"][0] == "RUNNING"
                and now["consent-filter"][1] != before["consent-filter"][1]
            ),
        )
        assert after["consent-filter"][3] == "1"
        assert after["consent-api"][3] == "0"
        log = (tmp_path / "services/supervisord.log").read_text()
        assert "exited: consent-filter (terminated by SIGKILL; not expected)" in log
    finally:
        supervise("stop", env)
    assert not (tmp_path / "services/supervisor.sock").exists()
