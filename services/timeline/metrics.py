from prometheus_client import Counter, Gauge

from shared.metrics import latency_histogram, size_histogram

EVENTS_PROJECTED = Counter(
    "touchline_timeline_events_projected_total", "Timeline rows stored (duplicates excluded)."
)
CUSTOMERS_ERASED = Counter(
    "touchline_timeline_customers_erased_total", "Customers deleted on an erase marker."
)
BATCH_SIZE = size_histogram("touchline_timeline_batch_size", "Allowed-stream records per projector batch.")
BATCH_SECONDS = latency_histogram(
    "touchline_timeline_batch_seconds", "Time to write one batch to PostgreSQL."
)
END_TO_END_SECONDS = latency_histogram(
    "touchline_timeline_end_to_end_seconds", "From an event's received_at to its timeline commit."
)
READ_SECONDS = latency_histogram(
    "touchline_timeline_read_seconds", "Timeline and profile read latency.", ("route",)
)
CONSUMER_LAG = Gauge(
    "touchline_timeline_consumer_lag", "Allowed-stream records not yet projected.", ["partition"]
)
UNREADABLE = Counter(
    "touchline_timeline_unreadable_records_total", "Allowed-stream records parked on touch.dlq, unreadable."
)
UNSTORABLE = Counter(
    "touchline_timeline_unstorable_records_total",
    "Allowed-stream touches parked on touch.dlq because PostgreSQL refused to store them (a data error).",
)
