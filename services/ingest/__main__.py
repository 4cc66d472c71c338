"""python -m services.ingest api|worker: the HTTP API or the Kafka-native validator."""

import argparse
import asyncio

import faust
import uvicorn

from services.ingest.api import create_app
from services.ingest.processor import create_processor
from services.ingest.settings import get_settings
from shared.kafka import ensure_topics
from shared.logging import configure_logging


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.ingest", description=__doc__)
    parser.add_argument("command", choices=["api", "worker"])
    command = parser.parse_args().command
    settings = get_settings()
    configure_logging(settings.log_level)
    asyncio.run(ensure_topics(settings))
    if command == "api":
        uvicorn.run(
            create_app(settings),
            host=settings.ingest_host,
            port=settings.ingest_port,
            log_config=None,
            access_log=False,
        )
    else:
        faust.Worker(create_processor(settings), loglevel=settings.log_level).execute_from_commandline()


if __name__ == "__main__":
    main()
