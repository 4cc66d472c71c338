"""The consent filter process between the real customer log and the allowed stream (G1, G2)."""

import asyncpg

from services.consent.settings import ConsentSettings
from shared.events import AllowedTouch, ConsentChange, Purpose
from shared.purposes import PROJECTION_PURPOSES
from shared.settings import TouchlineSettings
from tests.consent_log import AllowedRecords, append_to_log, random_log, read_allowed, read_log
from tests.consent_model import ProjectionModel, expected_holdings, expected_purposes
from tests.helpers import ServiceProcess


async def test_the_filter_forwards_exactly_what_consent_allows_and_audits_every_change(
    consent_filter: ServiceProcess, kafka: TouchlineSettings, database: str, unique: str
) -> None:
    customers = [f"{unique}-c{number}" for number in range(6)]
    await append_to_log(kafka, random_log(customers, 300, seed=11))
    log = await read_log(kafka, set(customers), 300)
    defaults = ConsentSettings().default_consent()
    expected = {
        projection: expected_holdings(log, projection, defaults) for projection in PROJECTION_PURPOSES
    }

    purposes = expected_purposes(log, defaults)
    wanted = {event_id: allowed_for for event_id, allowed_for in purposes.items() if allowed_for}

    def forwarded(records: AllowedRecords) -> dict[str, frozenset[Purpose]]:
        return {
            record.event.event_id: record.purposes for record in records if isinstance(record, AllowedTouch)
        }

    def settled(records: AllowedRecords) -> bool:
        # Every touch forwarded, not only the holdings right: a customer erased at the end holds nothing
        # before any of their records arrived, and partitions commit one transaction at a time.
        return len(forwarded(records)) >= len(wanted) and all(
            ProjectionModel(p).apply_all(records).holdings() == expected[p] for p in PROJECTION_PURPOSES
        )

    allowed = await read_allowed(kafka, set(customers), settled, timeout=120)
    assert forwarded(allowed) == wanted

    changes = {record.change_id for record in log if isinstance(record, ConsentChange)}
    connection = await asyncpg.connect(database)
    try:
        audited = await connection.fetch(
            "SELECT change_id FROM consent_history WHERE customer_id = ANY($1)", customers
        )
    finally:
        await connection.close()
    assert {row["change_id"] for row in audited} == changes
