"""The alerts, end to end through a real Prometheus (fixtures in tests/alerting.py): a frozen worker makes
TouchlineProcessDown fire while its growing lag makes TouchlineLagGrowing's condition hold (pending: its
5 minutes are left to its promtool test and to make faults), and one killed and restarted again and again
makes TouchlineProcessRestarting fire. The test waits for alert states, it does not time them.
"""

import asyncio

from shared.settings import TouchlineSettings
from tests.alerting import (
    LAGGING_GROUP,
    alert_state,
    feed_the_frozen_input,
    restart_and_wait_for_its_scrape,
    wait_until,
)
from tests.helpers import ServiceProcess


async def test_a_frozen_worker_fires_process_down_and_repeated_restarts_fire_restarting(
    projector: ServiceProcess, prometheus: str, kafka: TouchlineSettings
) -> None:
    assert alert_state("TouchlineProcessDown") is None
    projector.pause()  # SIGSTOP: alive to the supervisor, silent to Prometheus
    # Its input keeps coming: the lag the collector reads from the broker grows past the alert's 1,000.
    await feed_the_frozen_input(kafka.kafka_bootstrap, bursts=3, pause=3)
    await asyncio.to_thread(
        wait_until,
        lambda: alert_state("TouchlineLagGrowing", group=LAGGING_GROUP) in ("pending", "firing"),
        "lag to grow",
    )
    await asyncio.to_thread(
        wait_until, lambda: alert_state("TouchlineProcessDown") == "firing", "TouchlineProcessDown to fire"
    )
    projector.resume()
    await asyncio.to_thread(
        wait_until, lambda: alert_state("TouchlineProcessDown") is None, "TouchlineProcessDown to resolve"
    )

    assert alert_state("TouchlineProcessRestarting") is None
    for _ in range(3):
        await asyncio.to_thread(restart_and_wait_for_its_scrape, projector)
    await asyncio.to_thread(
        wait_until,
        lambda: alert_state("TouchlineProcessRestarting") == "firing",
        "TouchlineProcessRestarting to fire",
    )
