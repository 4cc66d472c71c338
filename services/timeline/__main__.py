"""python -m services.timeline api|worker|rebuild: the read API, the projector, or a full rebuild."""

import asyncio

from services.timeline.api import create_app
from services.timeline.processor import run_projector
from services.timeline.rebuild import rebuild
from services.timeline.settings import get_settings
from shared.service import run_command_line, serve_api


def main() -> None:
    settings = get_settings()
    run_command_line(
        "python -m services.timeline",
        __doc__,
        settings,
        {
            "api": lambda _: serve_api(create_app(settings), settings.timeline_host, settings.timeline_port),
            "worker": lambda _: asyncio.run(run_projector(settings)),
            "rebuild": lambda _: print(asyncio.run(rebuild(settings))),
        },
    )


if __name__ == "__main__":
    main()
