"""The lag alert firing through a real Prometheus, after its full 5 minutes (make faults only: it takes
about 6 minutes). While the projector is frozen its input keeps growing, so the lag the ops collector
reads from the broker grows for the whole window."""

import asyncio
import os

import pytest

from shared.settings import TouchlineSettings
from tests.alerting import LAGGING_GROUP, alert_state, feed_the_frozen_input, wait_until
from tests.helpers import ServiceProcess

pytestmark = pytest.mark.skipif(
    os.environ.get("TOUCHLINE_FAULTS_FULL") != "1", reason="6 minutes: make faults runs it"
)


@pytest.mark.timeout(900)
async def test_a_stage_falling_behind_for_five_minutes_fires_the_lag_alert(
    projector: ServiceProcess, prometheus: str, kafka: TouchlineSettings
) -> None:
    projector.pause()
    feeding = asyncio.create_task(feed_the_frozen_input(kafka.kafka_bootstrap, bursts=40, pause=10))
    try:
        await asyncio.to_thread(
            wait_until,
            lambda: alert_state("TouchlineLagGrowing", group=LAGGING_GROUP) == "firing",
            "TouchlineLagGrowing to fire",
            480.0,
        )
    finally:
        feeding.cancel()
        projector.resume()
