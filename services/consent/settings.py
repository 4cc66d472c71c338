from functools import lru_cache

from shared.streams import StreamSettings


class ConsentSettings(StreamSettings):
    """TOUCHLINE_CONSENT_DEFAULTS is read by the shared base: the timeline's profile shows consent too."""

    consent_host: str = "127.0.0.1"
    consent_port: int = 8004
    consent_worker_metrics_port: int = 9104
    consent_publish_timeout_seconds: float = 10.0
    # Records per filter batch: one poll, one audit statement, one Kafka transaction per partition.
    # Measured catching up a backlog: 2,000 reached 0.43 of a raw consume + produce, 6,000 reached 0.52.
    consent_batch_max: int = 6000


@lru_cache
def get_settings() -> ConsentSettings:
    return ConsentSettings()
