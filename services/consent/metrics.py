from prometheus_client import Counter, Histogram

from shared.metrics import latency_histogram

DECISIONS = Counter(
    "touchline_consent_decisions_total",
    "Touches judged by the filter, by purpose and outcome.",
    ["purpose", "outcome"],
)
DROPPED = Counter("touchline_consent_dropped_total", "Touches no purpose allows: forwarded nowhere.")
CHANGES = Counter(
    "touchline_consent_changes_total",
    "Consent changes applied, by purpose and status.",
    ["purpose", "status"],
)
CARRIED_OVER = Counter(
    "touchline_consent_merge_denials_total",
    "Denials an absorbed profile stated, carried over to the profile that absorbed it.",
)
ERASE_MARKERS = Counter(
    "touchline_consent_erase_markers_total", "Erase markers sent to the allowed stream.", ["purpose"]
)
UNREADABLE = Counter(
    "touchline_consent_unreadable_records_total", "Customer-log records that failed to decode."
)
FILTER_LAG = latency_histogram(
    "touchline_consent_filter_lag_seconds",
    "From a record's append to the customer log until the filter decided it.",
)
BATCH_SIZE = Histogram(
    "touchline_consent_batch_records",
    "Records of one input partition decided in one transaction.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
