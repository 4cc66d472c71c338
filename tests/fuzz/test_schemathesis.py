"""schemathesis (PyPI) against every API's OpenAPI schema, each API started as a user starts it
(`python -m services.X api`) on the real broker and a database of its own.

Checks: no server error, and every response conforms to what the schema documents: its status code,
content type and body. `make test` runs the examples, fuzzing and stateful phases with
TOUCHLINE_FUZZ_EXAMPLES (default 100) examples per operation; `make fuzz` adds the coverage phase (every
boundary of every schema: tens of thousands of cases for the recursive segment rules) and 500 examples.
Each run's report is kept beside the test logs.
"""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from shared.auth import SCOPES
from shared.db import migrate
from tests.conftest import ADMIN_DSN, SESSION_PREFIX, TEST_API_KEYS
from tests.helpers import delete_topics_with_prefix, start_apis

FUZZ_KEY = "test-fuzz"
PORTS = {"ingest": 18801, "timeline": 18802, "segments": 18803, "consent": 18804, "identity": 18805}
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
EXAMPLES = int(os.environ.get("TOUCHLINE_FUZZ_EXAMPLES", "100"))
PHASES = os.environ.get("TOUCHLINE_FUZZ_PHASES", "examples,fuzzing,stateful")
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


async def _database(name: str, create: bool) -> None:
    admin = await asyncpg.connect(f"{ADMIN_DSN}/postgres")
    try:
        statement = (
            f'CREATE DATABASE "{name}"' if create else f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        )
        await admin.execute(statement)
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def apis(kafka: object, test_env: dict[str, str], logs: Path) -> Iterator[dict[str, int]]:
    """The APIs with their own topics and database, so what the fuzzer writes stays apart."""
    prefix, database = f"{SESSION_PREFIX}fuzz.", f"touchline_fuzz_{uuid.uuid4().hex[:8]}"
    asyncio.run(_database(database, create=True))
    dsn = f"{ADMIN_DSN}/{database}"
    migrate(dsn)
    keys = TEST_API_KEYS | {FUZZ_KEY: list(SCOPES)}
    env = test_env | {
        "TOUCHLINE_TOPIC_PREFIX": prefix,
        "TOUCHLINE_PG_DSN": dsn,
        "TOUCHLINE_API_KEYS": json.dumps(keys),
    }
    processes = start_apis(PORTS, env, logs, "fuzz")
    try:
        yield PORTS
    finally:
        for process in processes:
            process.stop()
        asyncio.run(delete_topics_with_prefix(test_env["TOUCHLINE_KAFKA_BOOTSTRAP"], prefix))
        asyncio.run(_database(database, create=False))


@pytest.mark.parametrize("service", sorted(PORTS))
def test_schemathesis_finds_no_failure(apis: dict[str, int], service: str, logs: Path) -> None:
    report = logs / f"schemathesis-{service}.txt"
    command = [
        str(SCHEMATHESIS),
        "--no-color",
        "run",
        f"http://127.0.0.1:{apis[service]}/openapi.json",
        "--header",
        f"Authorization: Bearer {FUZZ_KEY}",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--phases",
        PHASES,
        "--seed",
        "20261202",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    report.write_text(result.stdout + result.stderr)
    assert result.returncode == 0, f"{report}:\n{result.stdout[-8000:]}"
