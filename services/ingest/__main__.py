"""python -m services.ingest api|worker: the HTTP API, or the validator of `touch.inbound`."""

from services.ingest.api import create_app
from services.ingest.processor import create_processor
from services.ingest.settings import get_settings
from shared.service import run_command_line, run_worker, serve_api


def main() -> None:
    settings = get_settings()
    run_command_line(
        "python -m services.ingest",
        __doc__,
        settings,
        {
            "api": lambda _: serve_api(create_app(settings), settings.ingest_host, settings.ingest_port),
            "worker": lambda _: run_worker(create_processor(settings), settings),
        },
    )


if __name__ == "__main__":
    main()
