"""python -m services.ops worker|status [--once] [--json]: the operations collector (stage lag,
dependency health, for Prometheus), or the pipeline's status at a glance from Prometheus."""

import argparse
import asyncio
import sys

from services.ops.processor import run_collector
from services.ops.settings import get_settings
from services.ops.status import show
from shared.service import run_command_line


def status(arguments: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.ops status")
    parser.add_argument("--once", action="store_true", help="one frame, then exit")
    parser.add_argument("--json", action="store_true", help="with --once: one JSON object")
    parsed = parser.parse_args(arguments)
    sys.exit(show(get_settings().ops_prometheus_url, parsed.once, parsed.json))


def main() -> None:
    settings = get_settings()
    run_command_line(
        "python -m services.ops",
        __doc__,
        settings,
        {"worker": lambda _: asyncio.run(run_collector(settings)), "status": status},
        taking_arguments=frozenset({"status"}),
    )


if __name__ == "__main__":
    main()
