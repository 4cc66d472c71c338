from functools import lru_cache

from pydantic import Field

from services.segments.evaluation import MICROS
from shared.rules import Duration, duration_seconds
from shared.streams import StreamSettings


class SegmentsSettings(StreamSettings):
    segments_host: str = "127.0.0.1"
    segments_port: int = 8003
    segments_worker_metrics_port: int = 9103
    segments_publish_timeout_seconds: float = 10.0
    segments_horizon: Duration = Field(
        default="400d", description="How much history each customer's digest keeps; no window may be longer."
    )
    # Touches of this worker's customers kept in memory between batches (about 300 bytes each).
    segments_cache_touches: int = 500_000
    # Records per evaluator batch (one poll, lingering TOUCHLINE_STREAM_BATCH_LINGER_SECONDS for more).
    segments_batch_max: int = 2000
    # How often the timer looks for customers whose window slid past: the bound on a late exit.
    segments_timer_interval_seconds: float = 0.1

    @property
    def horizon_seconds(self) -> int:
        return duration_seconds(self.segments_horizon)

    @property
    def horizon_micros(self) -> int:
        return self.horizon_seconds * MICROS


@lru_cache
def get_settings() -> SegmentsSettings:
    return SegmentsSettings()
