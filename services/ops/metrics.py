from prometheus_client import Gauge

CONSUMER_LAG = Gauge(
    "touchline_ops_consumer_lag_records",
    "Records between a stage's committed offset and the partition's end, read from the broker.",
    ["group", "topic", "partition"],
)
DEPENDENCY_UP = Gauge(
    "touchline_ops_dependency_up", "1 when the dependency answered the last probe, else 0.", ["dependency"]
)
