from prometheus_client import Counter

from shared.metrics import latency_histogram, size_histogram

EVENTS_ACCEPTED = Counter(
    "touchline_ingest_events_accepted_total",
    "Touch events published to the customer log.",
    ["source", "path"],
)
EVENTS_REJECTED = Counter(
    "touchline_ingest_events_rejected_total", "Touch events refused, by reason.", ["source", "reason"]
)
DEAD_LETTERS = Counter(
    "touchline_ingest_dead_letters_total", "Records sent to the dead-letter topic.", ["reason"]
)
REQUEST_SECONDS = latency_histogram(
    "touchline_ingest_request_seconds", "POST /v1/events latency, by status.", ("status",)
)
BATCH_SIZE = size_histogram("touchline_ingest_batch_size", "Events per accepted HTTP batch.")
PRODUCE_SECONDS = latency_histogram(
    "touchline_ingest_produce_seconds", "Time until Kafka acknowledged a batch."
)
