"""python -m services.segments api|worker|tail SEGMENT_ID: the API, the evaluator, or a segment's changes."""

from services.segments.api import create_app
from services.segments.processor import create_processor
from services.segments.settings import get_settings
from services.segments.tail import tail_command
from shared.service import run_command_line, run_worker, serve_api


def main() -> None:
    settings = get_settings()
    run_command_line(
        "python -m services.segments",
        __doc__,
        settings,
        {
            "api": lambda _: serve_api(create_app(settings), settings.segments_host, settings.segments_port),
            "worker": lambda _: run_worker(create_processor(settings), settings),
            "tail": lambda arguments: tail_command(settings, arguments),
        },
        taking_arguments=frozenset({"tail"}),
    )


if __name__ == "__main__":
    main()
