"""Realistic customer journeys for demos, tests and benchmarks: deterministic for a given seed."""

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import JsonValue

from shared.events import TouchEventIn

PAGES = ("/", "/shoes", "/shoes/trail-runner", "/jackets", "/sale", "/cart", "/checkout", "/account")
CAMPAIGNS = ("winter-sale", "new-arrivals", "loyalty-points", "abandoned-cart")
SUPPORT_TOPICS = ("delivery", "returns", "billing", "product-question")
STORES = ("berlin-mitte", "hamburg-hafen", "munich-center")


@dataclass(frozen=True)
class Persona:
    """How often a customer shows up on each channel, per week."""

    web_visits: float
    emails: float
    purchases: float
    support_calls: float
    store_visits: float
    app_sessions: float


PERSONAS = (
    Persona(web_visits=4, emails=2, purchases=0.6, support_calls=0.1, store_visits=0.1, app_sessions=1),
    Persona(web_visits=1, emails=2, purchases=0.1, support_calls=0.05, store_visits=0.5, app_sessions=0),
    Persona(web_visits=8, emails=3, purchases=1.5, support_calls=0.3, store_visits=0, app_sessions=5),
    Persona(web_visits=0.5, emails=1, purchases=0.05, support_calls=0.4, store_visits=0.2, app_sessions=0),
)


class _Journey:
    """One customer's touches; each channel method appends the events one real visit would produce."""

    def __init__(self, customer_id: str, rng: random.Random, start: datetime, end: datetime) -> None:
        self.customer_id, self.rng, self.start, self.end = customer_id, rng, start, end
        self.events: list[TouchEventIn] = []

    def moment(self) -> datetime:
        span = (self.end - self.start).total_seconds()
        return self.start + timedelta(seconds=self.rng.uniform(0, span))

    def add(self, type_: str, channel: str, at: datetime, properties: dict[str, JsonValue]) -> None:
        event_id = f"demo-{self.customer_id}-{len(self.events):05d}"
        at = min(at, self.end)  # follow-ups of a late email must not land in the future
        self.events.append(
            TouchEventIn(
                event_id=event_id,
                customer_id=self.customer_id,
                type=type_,
                channel=channel,
                occurred_at=at,
                properties=properties,
            )
        )

    def web_visit(self) -> None:
        at = self.moment()
        for step, page in enumerate(self.rng.sample(PAGES, k=self.rng.randint(1, 4))):
            self.add("page.viewed", "web", at + timedelta(seconds=40 * step), {"path": page})

    def email(self) -> None:
        at, campaign = self.moment(), self.rng.choice(CAMPAIGNS)
        self.add("email.sent", "email", at, {"campaign": campaign})
        if self.rng.random() < 0.45:
            self.add(
                "email.opened",
                "email",
                at + timedelta(hours=self.rng.uniform(0.1, 20)),
                {"campaign": campaign},
            )
            if self.rng.random() < 0.3:
                self.add("email.clicked", "email", at + timedelta(hours=21), {"campaign": campaign})

    def purchase(self, channel: str) -> None:
        items = self.rng.randint(1, 4)
        amount = round(sum(self.rng.uniform(9.9, 180) for _ in range(items)), 2)
        properties: dict[str, JsonValue] = {"amount": amount, "currency": "EUR", "items": items}
        if channel == "store":
            properties["store"] = self.rng.choice(STORES)
        self.add("purchase", channel, self.moment(), properties)

    def support_call(self) -> None:
        minutes = round(self.rng.uniform(2, 35), 1)
        properties: dict[str, JsonValue] = {"topic": self.rng.choice(SUPPORT_TOPICS), "minutes": minutes}
        self.add("support.call", "call_center", self.moment(), properties)

    def app_session(self) -> None:
        self.add("app.opened", "mobile", self.moment(), {"os": self.rng.choice(("ios", "android"))})


def _times(rng: random.Random, per_week: float, weeks: int) -> int:
    expected = per_week * weeks
    return int(expected) + (1 if rng.random() < expected - int(expected) else 0)


def customer_journey(customer_id: str, now: datetime, weeks: int = 8, seed: int = 0) -> list[TouchEventIn]:
    """All touches of one customer over the last `weeks`, ordered by when they happened."""
    rng = random.Random(f"{seed}:{customer_id}")
    persona = rng.choice(PERSONAS)
    journey = _Journey(customer_id, rng, now - timedelta(weeks=weeks), now - timedelta(minutes=1))
    for _ in range(_times(rng, persona.web_visits, weeks)):
        journey.web_visit()
    for _ in range(_times(rng, persona.emails, weeks)):
        journey.email()
    for _ in range(_times(rng, persona.purchases, weeks)):
        journey.purchase(rng.choice(("web", "web", "mobile")))
    for _ in range(_times(rng, persona.store_visits, weeks)):
        journey.purchase("store")
    for _ in range(_times(rng, persona.support_calls, weeks)):
        journey.support_call()
    for _ in range(_times(rng, persona.app_sessions, weeks)):
        journey.app_session()
    return sorted(journey.events, key=lambda event: event.occurred_at)


def demo_email(customer_id: str) -> str:
    return f"{customer_id}@example.com"


def demo_customer(customer_id: str, now: datetime, weeks: int = 8, seed: int = 0) -> list[TouchEventIn]:
    """A demo customer's journey whose first touch also names their email (the sign-up), so the console
    finds them by it."""
    touches = customer_journey(customer_id, now, weeks, seed)
    if touches:
        touches[0] = touches[0].model_copy(update={"identities": {"email": demo_email(customer_id)}})
    return touches


def journeys(customers: int, now: datetime, weeks: int = 8, seed: int = 0) -> Iterator[TouchEventIn]:
    """Touches of `customers` demo customers named `cust-00001`, ...; each customer's in time order."""
    for number in range(1, customers + 1):
        yield from demo_customer(f"cust-{number:05d}", now, weeks, seed)


# Segments `make run` defines, in the rule language marketing uses (see README.md).
DEMO_SEGMENTS: list[dict[str, JsonValue]] = [
    {
        "id": "repeat-buyers",
        "name": "Bought twice in 30 days, no support call this week",
        "rule": {
            "all": [
                {"count": {"type": "purchase", "within": "30d"}, "gte": 2},
                {"not": {"count": {"type": "support.call", "within": "7d"}, "gte": 1}},
            ]
        },
    },
    {
        "id": "big-spenders",
        "name": "Spent 500 or more in 90 days",
        "rule": {"sum": {"type": "purchase", "property": "amount", "within": "90d"}, "gte": 500},
    },
    {
        "id": "email-engaged",
        "name": "Opened two emails in 14 days",
        "rule": {"count": {"type": "email.opened", "within": "14d"}, "gte": 2},
    },
    {
        "id": "store-regulars",
        "name": "Two store purchases in 30 days",
        "rule": {"count": {"type": "purchase", "channel": "store", "within": "30d"}, "gte": 2},
    },
    {
        "id": "lapsed-visitors",
        "name": "Visited the site before, but not in the last 7 days",
        "rule": {
            "all": [
                {"count": {"type": "page.viewed", "within": "60d"}, "gte": 1},
                {"last": {"type": "page.viewed"}, "not_within": "7d"},
            ]
        },
    },
]


def opted_in_to_marketing(customer_id: str) -> bool:
    """Three demo customers in four granted marketing, so segments have members and non-members."""
    return random.Random(f"marketing:{customer_id}").random() < 0.75
