"""Every process of deploy/processes.txt started as `make run` starts them, on a benchmark's own topics,
database and ports; and the CPU time each of them (Kafka and PostgreSQL included) has used."""

import os
import resource
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.bench.ingest import free_ports
from tests.helpers import WORKER_ENV, ServiceProcess, deploy_processes

PORT_VARIABLES = {
    "ingest": "TOUCHLINE_INGEST_PORT",
    "timeline": "TOUCHLINE_TIMELINE_PORT",
    "segments": "TOUCHLINE_SEGMENTS_PORT",
    "consent": "TOUCHLINE_CONSENT_PORT",
    "identity": "TOUCHLINE_IDENTITY_PORT",
    "console": "TOUCHLINE_CONSOLE_PORT",
}
CONSOLE_READS = ("timeline", "segments", "consent", "identity")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    """The started processes by name, and the port of each service's API."""

    processes: dict[str, ServiceProcess]
    ports: dict[str, int]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


def console_env(ports: dict[str, int]) -> dict[str, str]:
    """Where the console finds the APIs it calls, by their ports."""
    return {f"TOUCHLINE_CONSOLE_{api.upper()}_URL": f"http://127.0.0.1:{ports[api]}" for api in CONSOLE_READS}


async def start_stack(env: dict[str, str], logs: Path) -> Stack:
    """Every process with `env` (topic prefix, database, keys), each API on a free port, metrics off."""
    ports = dict(zip(PORT_VARIABLES, free_ports(len(PORT_VARIABLES)), strict=True))
    shared_env = env | {PORT_VARIABLES[service]: str(port) for service, port in ports.items()}
    shared_env |= console_env(ports)
    processes: dict[str, ServiceProcess] = {}
    stack = Stack(processes, ports)
    try:
        for process in deploy_processes():
            # Per-process settings first, then the benchmark's: its ports must not clash with a `make run`.
            process_env = process.settings | shared_env | WORKER_ENV
            started = ServiceProcess(
                process.module, process.command, process_env, logs / f"{process.name}.log"
            )
            processes[process.name] = started.start()
        for process in deploy_processes():
            if process.command == "api":
                service = process.module.rsplit(".", 1)[1]
                await processes[process.name].wait_ready(f"{stack.url(service)}/readyz")
    except BaseException:
        stack.stop()
        raise
    return stack


def _seconds_of(stat: str, children: bool = False) -> float:
    fields = stat.rsplit(")", 1)[1].split()
    # utime, stime (and cutime, cstime: reaped children, which is where PostgreSQL's ended backends go)
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def _all_processes() -> Iterator[tuple[int, str, str]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), (entry / "stat").read_text(), (entry / "cmdline").read_bytes().decode()
            except (OSError, UnicodeDecodeError):
                continue


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU seconds used so far by each process of the stack, by the broker and by the database cluster,
    and by this benchmark's own process (its load client and watchers share the same two cores)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    used: dict[str, float] = {"kafka": 0.0, "postgresql": 0.0, "bench-client": own.ru_utime + own.ru_stime}
    for name, process in stack.processes.items():
        if process.process is not None:
            try:
                used[name] = _seconds_of(Path(f"/proc/{process.process.pid}/stat").read_text())
            except OSError:
                used[name] = 0.0
    for _, stat, cmdline in _all_processes():
        command = stat.split("(", 1)[1].split(")", 1)[0]
        if command == "java" and "kafka.Kafka" in cmdline:
            used["kafka"] += _seconds_of(stat)
        elif command == "postgres":
            # The postmaster's reaped children are its backends that ended: count them too.
            is_postmaster = " -D " in cmdline.replace("\0", " ")
            used["postgresql"] += _seconds_of(stat, children=is_postmaster)
    return used


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}
