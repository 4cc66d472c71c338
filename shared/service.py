"""How every service's `python -m services.X COMMAND` starts: logging, topics, then the command."""

import argparse
import asyncio
from collections.abc import Callable, Mapping

import faust
import uvicorn
from fastapi import FastAPI

from shared.kafka import ensure_topics
from shared.logging import configure_logging, logging_config
from shared.settings import TouchlineSettings


def serve_api(app: FastAPI, host: str, port: int) -> None:
    settings: TouchlineSettings = app.state.settings
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        limit_concurrency=settings.http_max_concurrency,
        h11_max_incomplete_event_size=settings.http_max_header_bytes,
    )


def run_worker(app: faust.App, settings: TouchlineSettings) -> None:
    worker = faust.Worker(app, loglevel=settings.log_level, logging_config=logging_config(settings.log_level))
    worker.execute_from_commandline()


Command = Callable[[list[str]], None]


def run_command_line(
    prog: str,
    description: str | None,
    settings: TouchlineSettings,
    commands: Mapping[str, Command],
    taking_arguments: frozenset[str] = frozenset(),
) -> None:
    """Parses `COMMAND [ARGUMENT ...]`; only commands in `taking_arguments` accept arguments."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("command", choices=sorted(commands))
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.arguments and parsed.command not in taking_arguments:
        parser.error(f"{parsed.command} takes no arguments")
    configure_logging(settings.log_level)
    asyncio.run(ensure_topics(settings))
    commands[parsed.command](parsed.arguments)
