from prometheus_client import Counter, Gauge

from shared.metrics import latency_histogram, size_histogram

EVALUATIONS = Counter(
    "touchline_segments_evaluations_total", "Segment rules evaluated for a customer, by trigger.", ["trigger"]
)
TRANSITIONS = Counter(
    "touchline_segments_transitions_total",
    "Membership changes decided, by segment, transition and reason.",
    ["segment_id", "transition", "reason"],
)
EVALUATION_SECONDS = latency_histogram(
    "touchline_segments_evaluation_seconds", "Time to evaluate and store one batch, by trigger.", ("trigger",)
)
BATCH_SIZE = size_histogram("touchline_segments_batch_size", "Allowed-stream records per evaluator batch.")
TIMER_LAG = latency_histogram(
    "touchline_segments_timer_lag_seconds", "How long after a window slid past the timer woke the customer."
)
END_TO_END_SECONDS = latency_histogram(
    "touchline_segments_end_to_end_seconds", "From a touch's received_at to its membership change on Kafka."
)
PUBLISHED = Counter("touchline_segments_changes_published_total", "Membership changes acknowledged by Kafka.")
STATE_CUSTOMERS = Gauge("touchline_segments_state_customers", "Customers with a segment digest.")
STATE_BYTES = Gauge("touchline_segments_state_bytes", "Bytes of stored digests, as PostgreSQL stores them.")
UNREADABLE = Counter("touchline_segments_unreadable_records_total", "Input records that failed to decode.")
UNSTORABLE = Counter(
    "touchline_segments_unstorable_records_total",
    "Allowed-stream records parked on touch.dlq because PostgreSQL refused their evaluation (a data error).",
)
