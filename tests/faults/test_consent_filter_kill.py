"""G3: SIGKILL the consent filter mid-stream, restart it, and no projection gains or loses anything."""

import asyncio
from collections import Counter
from pathlib import Path

from services.consent.settings import ConsentSettings
from shared.events import AllowedTouch
from shared.purposes import PROJECTION_PURPOSES
from shared.settings import TouchlineSettings
from tests.consent_log import AllowedRecords, append_to_log, random_log, read_allowed, read_log
from tests.consent_model import ProjectionModel, expected_holdings, expected_purposes
from tests.helpers import worker

RECORDS = 3000
CHUNK = 100
# Kill when the allowed stream holds this share of the records: provably mid-stream, at different depths.
KILL_AT_SHARES = (0.2, 0.5, 0.8)


async def test_g3_the_filter_survives_sigkills_mid_stream(
    kafka: TouchlineSettings, database: str, test_env: dict[str, str], logs: Path, unique: str
) -> None:
    customers = [f"{unique}-k{number}" for number in range(25)]
    log = random_log(customers, RECORDS, seed=3)
    consent_filter = worker("services.consent", "consent-filter-killed", test_env, logs).start()

    async def feed() -> None:
        for start in range(0, RECORDS, CHUNK):
            await append_to_log(kafka, log[start : start + CHUNK])
            await asyncio.sleep(0.25)

    feeding = asyncio.create_task(feed())
    try:
        for share in KILL_AT_SHARES:
            outputs_wanted = share * RECORDS * 0.7  # about 70% of records are touches consent lets through

            def deep_enough(records: AllowedRecords, wanted: float = outputs_wanted) -> bool:
                return len(records) >= wanted

            await read_allowed(kafka, set(customers), deep_enough, timeout=120)
            consent_filter.kill()
            consent_filter.start()
        await feeding
        ordered = await read_log(kafka, set(customers), RECORDS)
        defaults = ConsentSettings().default_consent()
        expected = {
            projection: expected_holdings(ordered, projection, defaults) for projection in PROJECTION_PURPOSES
        }

        wanted = {event_id for event_id, purposes in expected_purposes(ordered, defaults).items() if purposes}

        def settled(records: AllowedRecords) -> bool:
            return {
                touch.event.event_id for touch in records if isinstance(touch, AllowedTouch)
            } >= wanted and all(
                ProjectionModel(p).apply_all(records).holdings() == expected[p] for p in PROJECTION_PURPOSES
            )

        allowed = await read_allowed(kafka, set(customers), settled, timeout=240)
        # Exactly once: a transaction left open by a kill is aborted, so no touch is forwarded twice.
        forwarded = Counter(touch.event.event_id for touch in allowed if isinstance(touch, AllowedTouch))
        assert [event_id for event_id, times in forwarded.items() if times > 1] == []
    finally:
        feeding.cancel()
        consent_filter.stop()
