"""SIGKILL the segment evaluator mid-stream, restart it: campaign tools see every transition exactly once.

"Exactly once" is what a consumer following the README's contract sees: it drops a change_id it has
already handled. The test also counts the copies it dropped, so the report shows the relay re-publishing.
"""

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from services.segments.api import create_app
from services.segments.settings import SegmentsSettings
from shared.events import SegmentMembershipChange
from shared.serialization import decode
from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_ALLOWED, SEGMENT_MEMBERSHIP
from tests.helpers import ServiceProcess, asgi_client, consume_until, eventually
from tests.segments_support import allowed_touch, evaluated_position, feed, revocation

RECORDS = 3000
CHUNK = 60
KILLS = 3
ADMIN = {"Authorization": "Bearer test-marketer"}
THRESHOLDS = {"any": 1, "loyal": 3}
Transition = tuple[str, str, str, str]  # customer, segment, transition, reason


def scripted_stream(
    customers: list[str], kind: str, seed: int
) -> tuple[list[tuple[bytes, bytes]], list[Transition]]:
    """Touches (some resent) and revocations; and the transitions they must cause, in order per customer."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    records: list[tuple[bytes, bytes]] = []
    expected: list[Transition] = []
    seen: dict[str, set[int]] = {customer: set() for customer in customers}
    for number in range(RECORDS):
        customer = rng.choice(customers)
        if rng.random() < 0.02:
            records.append(revocation(customer, f"r{number}"))
            expected += [
                (customer, s, "exited", "consent_revoked")
                for s, n in THRESHOLDS.items()
                if len(seen[customer]) >= n
            ]
            seen[customer] = set()
            continue
        event_number = (
            number if rng.random() < 0.9 or not seen[customer] else rng.choice(sorted(seen[customer]))
        )
        records.append(allowed_touch(customer, f"e{event_number}", kind, now))
        before = len(seen[customer])
        seen[customer].add(event_number)
        expected += [
            (customer, s, "entered", "event")
            for s, n in THRESHOLDS.items()
            if before < n <= len(seen[customer])
        ]
    return records, expected


async def test_a_killed_evaluator_loses_and_doubles_no_membership_change(
    segment_evaluator: ServiceProcess, kafka: TouchlineSettings, database: str, unique: str
) -> None:
    kind = f"buy.u{unique}"
    customers = [f"{unique}-k{number}" for number in range(200)]
    allowed = kafka.topic(CUSTOMER_ALLOWED)
    app = create_app(SegmentsSettings())
    async with asgi_client(app) as client:
        for name, threshold in THRESHOLDS.items():
            rule: dict[str, Any] = {"count": {"type": kind, "within": "1d"}, "gte": threshold}
            body = {"id": f"{name}-{unique}", "name": name, "rule": rule}
            assert (await client.post("/v1/segments", json=body, headers=ADMIN)).status_code == 201
    records, expected = scripted_stream(customers, kind, seed=7)

    async def feed_slowly() -> None:
        for start in range(0, RECORDS, CHUNK):
            await feed(kafka, records[start : start + CHUNK])
            await asyncio.sleep(0.8)  # slow enough that three kill-restart cycles fall inside the feed

    feeding = asyncio.create_task(feed_slowly())
    try:
        for _ in range(KILLS):
            before = await evaluated_position(database, allowed)

            def advanced(position: int, before: int = before) -> bool:
                return position > before

            await eventually(lambda: evaluated_position(database, allowed), advanced)
            assert not feeding.done(), "the feed ended before the kill: not mid-stream"
            segment_evaluator.kill()
            segment_evaluator.start()
        await feeding
    finally:
        feeding.cancel()

    names = {f"{name}-{unique}": name for name in THRESHOLDS}
    wanted = Counter(expected)
    seen_ids: set[str] = set()
    copies = 0

    def handled(kept: list[Any]) -> bool:
        nonlocal copies
        copies = 0
        seen_ids.clear()
        for record in kept:
            change_id = decode(SegmentMembershipChange, record.value).change_id
            copies += change_id in seen_ids
            seen_ids.add(change_id)
        return len(seen_ids) >= len(expected)

    kept = await consume_until(
        kafka.kafka_bootstrap,
        kafka.topic(SEGMENT_MEMBERSHIP),
        handled,
        keep=lambda record: (record.key or b"").decode() in customers,
        timeout=180,
    )
    unique_changes: dict[str, SegmentMembershipChange] = {}
    for record in kept:
        change = decode(SegmentMembershipChange, record.value)
        unique_changes.setdefault(change.change_id, change)
    observed = [
        (c.customer_id, names[c.segment_id], c.transition.value, c.reason.value)
        for c in unique_changes.values()
    ]
    assert Counter(observed) == wanted
    for customer in customers:  # and in the right order for each customer
        assert [t for t in observed if t[0] == customer] == [t for t in expected if t[0] == customer]
    print(f"{len(expected)} transitions, {copies} redelivered copies dropped by change_id")
