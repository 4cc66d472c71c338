"""python -m shared topics|migrate|demo|probe: set-up steps and checks the Makefile and operators run."""

import argparse
import asyncio
import sys
from datetime import UTC, datetime

import httpx

from shared.db import migrate
from shared.demo import DEMO_SEGMENTS, journeys, opted_in_to_marketing
from shared.kafka import ensure_topics
from shared.settings import TouchlineSettings


def _expect(response: httpx.Response, *statuses: int) -> None:
    if response.status_code not in statuses:
        sys.exit(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")


def load_demo(urls: argparse.Namespace, api_key: str, customers: int, weeks: int) -> int:
    """Demo segments and marketing consent first, then the journeys through the ingest API.

    Consent goes first so that it precedes the touches in each customer's log and so applies to them.
    """
    names = [f"cust-{number:05d}" for number in range(1, customers + 1)]
    with httpx.Client(headers={"Authorization": f"Bearer {api_key}"}, timeout=30) as client:
        for segment in DEMO_SEGMENTS:
            _expect(client.post(f"{urls.segments_url}/v1/segments", json=segment), 201, 409)
        for customer in filter(opted_in_to_marketing, names):
            consent = f"{urls.consent_url}/v1/customers/{customer}/consent/marketing"
            _expect(client.put(consent, json={"status": "granted"}), 202)
        events = list(journeys(customers, datetime.now(UTC), weeks))
        for batch in (events[start : start + 100] for start in range(0, len(events), 100)):
            body = "[" + ",".join(event.model_dump_json() for event in batch) + "]"
            headers = {"Content-Type": "application/json"}
            _expect(client.post(f"{urls.url}/v1/events", content=body, headers=headers), 202)
    return len(events)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3.0).is_success
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("topics", help="create the registry's missing topics")
    commands.add_parser("migrate", help="apply pending database migrations")
    demo = commands.add_parser("demo", help="load demo customer journeys through the ingest API")
    demo.add_argument("--url", default="http://127.0.0.1:8001", help="the ingest API")
    demo.add_argument("--consent-url", default="http://127.0.0.1:8004")
    demo.add_argument("--segments-url", default="http://127.0.0.1:8003")
    demo.add_argument(
        "--api-key", required=True, help="a key with events:write, consent:write, segments:admin"
    )
    demo.add_argument("--customers", type=int, default=200)
    demo.add_argument("--weeks", type=int, default=8)
    probe = commands.add_parser("probe", help="exit 0 when URL answers 2xx within 3 s (health checks)")
    probe.add_argument("url")
    args = parser.parse_args()
    if args.command == "probe":
        sys.exit(0 if _answers(args.url) else 1)
    settings = TouchlineSettings()
    if args.command == "topics":
        created = asyncio.run(ensure_topics(settings))
        print(f"topics created: {', '.join(created) or 'none (all existed)'}")
    elif args.command == "migrate":
        applied = migrate(settings.pg_dsn.get_secret_value())
        print(f"migrations applied: {', '.join(applied) or 'none (up to date)'}")
    else:
        sent = load_demo(args, args.api_key, args.customers, args.weeks)
        print(f"demo: {len(DEMO_SEGMENTS)} segments, {sent} touch events for {args.customers} customers")


if __name__ == "__main__":
    main()
