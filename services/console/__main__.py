"""python -m services.console api: the Customer 360 console (http://127.0.0.1:8000 by default)."""

from services.console.api import create_app
from services.console.settings import get_settings
from shared.service import run_command_line, serve_api


def main() -> None:
    settings = get_settings()
    run_command_line(
        "python -m services.console",
        __doc__,
        settings,
        {"api": lambda _: serve_api(create_app(settings), settings.console_host, settings.console_port)},
    )


if __name__ == "__main__":
    main()
