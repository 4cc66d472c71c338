"""python -m shared topics|migrate|demo: set-up steps the Makefile and operators run."""

import argparse
import asyncio
import sys
from datetime import UTC, datetime

import httpx

from shared.db import migrate
from shared.demo import journeys
from shared.kafka import ensure_topics
from shared.settings import TouchlineSettings


def load_demo(url: str, api_key: str, customers: int, weeks: int) -> int:
    """Sends the demo journeys through the ingest API, as a channel system would."""
    sent = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30) as client:
        events = list(journeys(customers, datetime.now(UTC), weeks))
        for batch in (events[start : start + 100] for start in range(0, len(events), 100)):
            body = "[" + ",".join(event.model_dump_json() for event in batch) + "]"
            response = client.post("/v1/events", content=body, headers={"Content-Type": "application/json"})
            if response.status_code != 202:
                sys.exit(f"ingest refused the demo batch: {response.status_code} {response.text}")
            sent += len(batch)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("topics", help="create the registry's missing topics")
    commands.add_parser("migrate", help="apply pending database migrations")
    demo = commands.add_parser("demo", help="load demo customer journeys through the ingest API")
    demo.add_argument("--url", default="http://127.0.0.1:8001")
    demo.add_argument("--api-key", required=True)
    demo.add_argument("--customers", type=int, default=200)
    demo.add_argument("--weeks", type=int, default=8)
    args = parser.parse_args()
    settings = TouchlineSettings()
    if args.command == "topics":
        created = asyncio.run(ensure_topics(settings))
        print(f"topics created: {', '.join(created) or 'none (all existed)'}")
    elif args.command == "migrate":
        applied = migrate(settings.pg_dsn.get_secret_value())
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
    else:
        sent = load_demo(args.url, args.api_key, args.customers, args.weeks)
        print(f"demo: {sent} touch events for {args.customers} customers accepted by ingest")


if __name__ == "__main__":
    main()
