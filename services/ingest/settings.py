from datetime import timedelta
from functools import lru_cache

from services.ingest.domain import IngestPolicy
from shared.streams import StreamSettings


class IngestSettings(StreamSettings):
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8001
    ingest_max_batch: int = 500
    ingest_max_body_bytes: int = 1024 * 1024
    ingest_max_future_seconds: float = 300.0
    ingest_produce_timeout_seconds: float = 10.0
    ingest_worker_metrics_port: int = 9101

    def policy(self) -> IngestPolicy:
        return IngestPolicy(
            self.ingest_max_batch, timedelta(seconds=self.ingest_max_future_seconds), self.identity_kinds()
        )


@lru_cache
def get_settings() -> IngestSettings:
    return IngestSettings()
