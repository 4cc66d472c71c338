"""python -m services.identity api|worker: the identity API, or the identity resolver."""

import asyncio

from services.identity.api import create_app
from services.identity.processor import run_resolver
from services.identity.settings import get_settings
from shared.service import run_command_line, serve_api


def main() -> None:
    settings = get_settings()
    run_command_line(
        "python -m services.identity",
        __doc__,
        settings,
        {
            "api": lambda _: serve_api(create_app(settings), settings.identity_host, settings.identity_port),
            "worker": lambda _: asyncio.run(run_resolver(settings)),
        },
    )


if __name__ == "__main__":
    main()
