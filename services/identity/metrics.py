from prometheus_client import Counter

from shared.metrics import latency_histogram, size_histogram

RESOLVED = Counter("touchline_identity_touches_resolved_total", "Touches resolved to a profile.")
CHANGES = Counter(
    "touchline_identity_changes_total",
    "Identity graph changes, by kind (linked, merged, conflict).",
    ["change"],
)
BLOCKED = Counter(
    "touchline_identity_blocked_identifiers_total", "Identifiers left out because their value is blocked."
)
UNREADABLE = Counter(
    "touchline_identity_unreadable_records_total", "identity.inbound records that failed to decode."
)
RESOLVER_LAG = latency_histogram(
    "touchline_identity_resolver_lag_seconds",
    "From a record's append to identity.inbound until its resolution was committed.",
)
BATCH_SIZE = size_histogram("touchline_identity_batch_records", "Records resolved in one transaction.")
ERASED = Counter(
    "touchline_identity_profiles_erased_total", "Profiles forgotten by an erasure, merged ones included."
)
SPLIT_TOUCHES = Counter(
    "touchline_identity_split_touches_total", "Touches moved to another profile by a split, logged again."
)
