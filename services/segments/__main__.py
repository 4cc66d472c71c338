"""python -m services.segments api|worker|tail SEGMENT_ID: the API, the evaluator, or a segment's changes."""

import asyncio

from services.segments.api import create_app
from services.segments.processor import run_evaluator
from services.segments.settings import get_settings
from services.segments.tail import tail_command
from shared.service import run_command_line, serve_api


def main() -> None:
    settings = get_settings()
    run_command_line(
        "python -m services.segments",
        __doc__,
        settings,
        {
            "api": lambda _: serve_api(create_app(settings), settings.segments_host, settings.segments_port),
            "worker": lambda _: asyncio.run(run_evaluator(settings)),
            "tail": lambda arguments: tail_command(settings, arguments),
        },
        taking_arguments=frozenset({"tail"}),
    )


if __name__ == "__main__":
    main()
