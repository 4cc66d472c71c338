"""Prometheus helpers shared by every service, and the one naming scheme:
`touchline_<service>_<thing>[_<unit>]`, where <service> is a folder of services/ (or `api`, for what every
API's front door measures alike), <unit> is `seconds`, `bytes` or `records` when the value has one, and a
counter ends in `_total`. Labels are bounded: never a customer, a path or a key."""

from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest

# Latencies from sub-millisecond reads to multi-second broker stalls.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


def latency_histogram(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Histogram:
    return Histogram(name, documentation, labels, buckets=LATENCY_BUCKETS)


def size_histogram(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Histogram:
    return Histogram(name, documentation, labels, buckets=SIZE_BUCKETS)


# Every API request, by service, route template (never the path itself: it holds customer ids) and status;
# "-" for a request refused before routing (no key, too large) or matching no route.
API_REQUEST_SECONDS = latency_histogram(
    "touchline_api_request_seconds",
    "API requests by route and status, and their latency.",
    ("service", "route", "status"),
)


def render_metrics() -> tuple[bytes, str]:
    """This process's metrics in the Prometheus text format, with its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
