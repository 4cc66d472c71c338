"""python -m services.ops worker: the operations collector (stage lag, dependency health) for Prometheus."""

import asyncio

from services.ops.processor import run_collector
from services.ops.settings import get_settings
from shared.service import run_command_line


def main() -> None:
    settings = get_settings()
    run_command_line(
        "python -m services.ops",
        __doc__,
        settings,
        {"worker": lambda _: asyncio.run(run_collector(settings))},
    )


if __name__ == "__main__":
    main()
