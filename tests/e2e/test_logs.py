"""Logs hold no personal data: after a run through every process (good touches, a refused batch, a
consent change, an erasure, a poison record), no log line holds a customer id, a property value or a key.

Every line of every process's log is also JSON (shared/logging.py), so a log pipeline can parse it.
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from shared.settings import TouchlineSettings
from shared.topics import TOUCH_INBOUND
from tests.helpers import ServiceProcess, eventually, produce, start_apis

WRITER_KEY, DPO_KEY, READER_KEY = "test-writer", "test-dpo", "test-reader"
PORTS = {"ingest": 18701, "consent": 18704, "timeline": 18702}


@pytest.fixture
def apis(
    consent_filter: ServiceProcess,
    timeline_projector: ServiceProcess,
    segment_evaluator: ServiceProcess,
    ingest_worker: ServiceProcess,
    test_env: dict[str, str],
    logs: Path,
) -> Iterator[dict[str, str]]:
    """The APIs as processes too, so their logs are files to read."""
    processes = start_apis(PORTS, test_env, logs, "logs")
    try:
        yield {name: f"http://127.0.0.1:{port}" for name, port in PORTS.items()}
    finally:
        for process in processes:
            process.stop()


def read_logs(folder: Path) -> list[tuple[str, str]]:
    return [
        (path.name, line) for path in sorted(folder.glob("*.log")) for line in path.read_text().splitlines()
    ]


async def test_no_log_line_holds_a_customer_id_a_value_or_a_key(
    apis: dict[str, str], kafka: TouchlineSettings, logs: Path, unique: str
) -> None:
    customer, secret = f"pii-{unique}", f"secret-value-{unique}"
    touch = {
        "event_id": f"{unique}-1",
        "customer_id": customer,
        "type": "purchase",
        "channel": "web",
        "occurred_at": datetime.now(UTC).isoformat(),
        "properties": {"amount": 10, "note": secret},
    }
    async with httpx.AsyncClient(timeout=10) as client:
        writer = {"Authorization": f"Bearer {WRITER_KEY}"}
        accepted = await client.post(f"{apis['ingest']}/v1/events", json=[touch], headers=writer)
        assert accepted.status_code == 202, accepted.text
        refused = await client.post(
            f"{apis['ingest']}/v1/events", json=[touch | {"occurred_at": secret}], headers=writer
        )
        assert refused.status_code == 422
        await produce(
            kafka.kafka_bootstrap,
            kafka.topic(TOUCH_INBOUND),
            [(customer.encode(), json.dumps(touch | {"type": secret}).encode())],
        )
        reader = {"Authorization": f"Bearer {READER_KEY}"}

        async def projected() -> int:
            return (
                await client.get(f"{apis['timeline']}/v1/customers/{customer}/timeline", headers=reader)
            ).status_code

        await eventually(projected, lambda status: status == 200)
        dpo = {"Authorization": f"Bearer {DPO_KEY}"}
        consent = f"{apis['consent']}/v1/customers/{customer}/consent/marketing"
        assert (await client.put(consent, json={"status": "granted"}, headers=dpo)).status_code == 202
        erasure = await client.post(f"{apis['consent']}/v1/customers/{customer}/erasure", headers=dpo)
        assert erasure.status_code == 202
        await eventually(projected, lambda status: status == 404)

    lines = read_logs(logs)
    assert lines  # the processes did log
    for name, line in lines:
        assert isinstance(json.loads(line), dict), f"{name}: not a JSON line: {line[:200]}"
    for needle in (customer, secret, WRITER_KEY, DPO_KEY, READER_KEY):
        leaks = [f"{name}: {line[:200]}" for name, line in lines if needle in line]
        assert not leaks, f"{needle!r} is in the logs:\n" + "\n".join(leaks[:5])
