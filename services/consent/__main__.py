"""python -m services.consent api|worker: the consent API, or the consent filter."""

import asyncio

from services.consent.api import create_app
from services.consent.processor import run_filter
from services.consent.settings import get_settings
from shared.service import run_command_line, serve_api


def main() -> None:
    settings = get_settings()
    run_command_line(
        "python -m services.consent",
        __doc__,
        settings,
        {
            "api": lambda _: serve_api(create_app(settings), settings.consent_host, settings.consent_port),
            "worker": lambda _: asyncio.run(run_filter(settings)),
        },
    )


if __name__ == "__main__":
    main()
