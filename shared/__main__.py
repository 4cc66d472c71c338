"""python -m shared topics|migrate|demo|key|probe: set-up steps and checks the Makefile and operators run."""

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


# The demo writes through three APIs, each with a key of its own scope, so it loads with any key set
# that has the three scopes somewhere, not only with one all-powerful key.
DEMO_SCOPES = ("segments:admin", "consent:write", "events:write")
SKIPPED = 3  # the exit status of a demo that could not load; make run says why and carries on


def key_for(settings: TouchlineSettings, scope: str) -> str | None:
    """The first key of TOUCHLINE_API_KEYS that holds `scope`."""
    for key, grant in settings.api_keys.items():
        if scope in (grant if isinstance(grant, list) else grant.scopes):
            return key
    return None


def load_demo(urls: argparse.Namespace, keys: dict[str, str], customers: int, weeks: int) -> int:
    """Demo segments and marketing consent first, then the journeys through the ingest API.

    Consent goes first so that it precedes the touches in each customer's log and so applies to them.
    """
    names = [f"cust-{number:05d}" for number in range(1, customers + 1)]
    with httpx.Client(timeout=30) as client:

        def bearer(scope: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {keys[scope]}"}

        for segment in DEMO_SEGMENTS:
            created = client.post(
                f"{urls.segments_url}/v1/segments", json=segment, headers=bearer("segments:admin")
            )
            _expect(created, 201, 409)
        for customer in filter(opted_in_to_marketing, names):
            consent = f"{urls.consent_url}/v1/customers/{customer}/consent/marketing"
            _expect(client.put(consent, json={"status": "granted"}, headers=bearer("consent:write")), 202)
        events = list(journeys(customers, datetime.now(UTC), weeks))
        headers = {"Content-Type": "application/json"} | bearer("events:write")
        for batch in (events[start : start + 100] for start in range(0, len(events), 100)):
            body = "[" + ",".join(event.model_dump_json() for event in batch) + "]"
            _expect(client.post(f"{urls.url}/v1/events", content=body, headers=headers), 202)
    return len(events)


def demo(args: argparse.Namespace, settings: TouchlineSettings) -> None:
    keys = {scope: key for scope in DEMO_SCOPES if (key := key_for(settings, scope))}
    if missing := [scope for scope in DEMO_SCOPES if scope not in keys]:
        print(f"demo skipped: no key in TOUCHLINE_API_KEYS holds {', '.join(missing)}")
        sys.exit(SKIPPED)
    sent = load_demo(args, keys, args.customers, args.weeks)
    print(f"demo: {len(DEMO_SEGMENTS)} segments, {sent} touch events for {args.customers} customers")


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
    loader = commands.add_parser(
        "demo",
        help="load demo customer journeys through the APIs, with keys of TOUCHLINE_API_KEYS that hold"
        f" {', '.join(DEMO_SCOPES)} (exit {SKIPPED} if none does)",
    )
    loader.add_argument("--url", default="http://127.0.0.1:8001", help="the ingest API")
    loader.add_argument("--consent-url", default="http://127.0.0.1:8004")
    loader.add_argument("--segments-url", default="http://127.0.0.1:8003")
    loader.add_argument("--customers", type=int, default=200)
    loader.add_argument("--weeks", type=int, default=8)
    key = commands.add_parser("key", help="print a key of TOUCHLINE_API_KEYS holding SCOPE (exit 1 if none)")
    key.add_argument("scope")
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
    elif args.command == "key":
        found = key_for(settings, args.scope)
        print(found or "")
        sys.exit(0 if found else 1)
    else:
        demo(args, settings)


if __name__ == "__main__":
    main()
