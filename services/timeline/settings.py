from functools import lru_cache

from shared.streams import StreamSettings


class TimelineSettings(StreamSettings):
    timeline_host: str = "127.0.0.1"
    timeline_port: int = 8002
    timeline_worker_metrics_port: int = 9102
    # A batch is written when it holds this many records or has waited this long, whichever comes first.
    timeline_batch_max: int = 2000
    timeline_batch_seconds: float = 0.1


@lru_cache
def get_settings() -> TimelineSettings:
    return TimelineSettings()
