from functools import lru_cache

from shared.streams import StreamSettings


class OpsSettings(StreamSettings):
    ops_host: str = "127.0.0.1"
    ops_worker_metrics_port: int = 9105
    # How often the collector reads every group's committed offsets and the topics' ends.
    ops_interval_seconds: float = 5.0
    # Where `python -m services.ops status` asks (deploy/local/prometheus.sh runs it here).
    ops_prometheus_url: str = "http://127.0.0.1:9090"


@lru_cache
def get_settings() -> OpsSettings:
    return OpsSettings()
