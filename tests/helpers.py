"""Helpers for tests that talk to the real broker; later services' tests build on these."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


Headers = list[tuple[str, bytes]]


async def produce(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes | None, bytes | None]],
    headers: Headers | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value=value, key=key, headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


async def consume_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[ConsumerRecord]], bool],
    *,
    keep: Callable[[ConsumerRecord], bool] = lambda record: True,
    timeout: float = 30.0,
) -> list[ConsumerRecord]:
    """Every record of `topic` from the beginning that `keep` selects, read until `done` says so.

    Raises TimeoutError with what was seen, so a failing test shows how far the stream got.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    kept: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout
        while not done(kept):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: condition not met after {timeout} s; kept {len(kept)} records")
            batches = await consumer.getmany(timeout_ms=200)
            kept.extend(record for batch in batches.values() for record in batch if keep(record))
        return kept
    finally:
        await consumer.stop()


async def delete_topics_with_prefix(bootstrap: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        doomed = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


class ServiceProcess:
    """A service started as a user starts it (`python -m services.X COMMAND`), for e2e and fault tests."""

    def __init__(self, module: str, command: str, env: dict[str, str], log: Path) -> None:
        self.module, self.command, self.env, self.log = module, command, env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "ServiceProcess":
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, self.command],
                cwd=ROOT,
                env=os.environ | self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, as when a machine dies."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: frozen in place, as a process the scheduler does not run."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    async def wait_ready(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"{self.module} {self.command} exited; see {self.log}")
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.3)
        raise TimeoutError(f"{self.module} {self.command} not ready at {url}; see {self.log}")


WORKER_ENV = {
    "TOUCHLINE_INGEST_WORKER_METRICS_PORT": "0",
    "TOUCHLINE_CONSENT_WORKER_METRICS_PORT": "0",
    "TOUCHLINE_TIMELINE_WORKER_METRICS_PORT": "0",
    "TOUCHLINE_SEGMENTS_WORKER_METRICS_PORT": "0",
    "TOUCHLINE_IDENTITY_WORKER_METRICS_PORT": "0",
    # The broker's smallest session timeout: a killed worker's partitions move on quickly.
    "TOUCHLINE_STREAM_SESSION_TIMEOUT_SECONDS": "6",
}


class DeployedProcess(NamedTuple):
    """One line of deploy/processes.txt."""

    name: str
    module: str
    command: str
    settings: dict[str, str]


def deploy_processes() -> list[DeployedProcess]:
    """Every long-running process as deploy/processes.txt lists it, for tests that start them all."""
    processes = []
    for line in (ROOT / "deploy/processes.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, module, command, _, *settings = line.split()
            processes.append(
                DeployedProcess(name, module, command, dict(item.split("=", 1) for item in settings))
            )
    return processes


def start_apis(ports: dict[str, int], env: dict[str, str], logs: Path, label: str) -> list[ServiceProcess]:
    """Each named service's API (`python -m services.NAME api`) on its port, once each answers /readyz."""
    processes = [
        ServiceProcess(
            f"services.{name}",
            "api",
            env | {f"TOUCHLINE_{name.upper()}_PORT": str(port)},
            logs / f"{label}-{name}.log",
        ).start()
        for name, port in ports.items()
    ]
    deadline = time.monotonic() + 60
    for port in ports.values():
        while not _answers(f"http://127.0.0.1:{port}/readyz"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"an API on port {port} is not ready after 60 s; see {logs}")
            time.sleep(0.3)
    return processes


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def worker(module: str, name: str, env: dict[str, str], logs: Path) -> ServiceProcess:
    """A stream worker as `python -m MODULE worker`, with test-friendly ports and timeouts."""
    return ServiceProcess(module, "worker", env | WORKER_ENV, logs / f"{name}.log")


def running(module: str, name: str, env: dict[str, str], logs: Path) -> Iterator[ServiceProcess]:
    """A worker for the length of a fixture: started, yielded, stopped."""
    process = worker(module, name, env, logs).start()
    try:
        yield process
    finally:
        process.stop()


async def eventually(
    check: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 60.0
) -> T:
    """Polls `check` until `done` holds for its answer; the last answer is in the TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await check()
        if done(answer):
            return answer
        if time.monotonic() > deadline:
            raise TimeoutError(f"still not done after {timeout} s; last answer: {repr(answer)[:800]}")
        await asyncio.sleep(0.3)


@asynccontextmanager
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to `app` in-process, with the app's start-up and shut-down run around it."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://touchline") as client,
    ):
        yield client
