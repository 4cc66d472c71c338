"""The topic registry: every topic's name and shape, so code, not hands, creates them."""

from dataclasses import dataclass

DAY_MS = 24 * 3600 * 1000
FOREVER = -1


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    cleanup_policy: str = "delete"
    retention_ms: int = FOREVER

    def config(self, min_insync_replicas: int) -> dict[str, str]:
        return {
            "cleanup.policy": self.cleanup_policy,
            "retention.ms": str(self.retention_ms),
            "min.insync.replicas": str(min_insync_replicas),
        }


# Customer-keyed topics share one partition count, so per-customer state stays co-partitioned.
CUSTOMER_PARTITIONS = 12

TOUCH_INBOUND = TopicSpec("touch.inbound", CUSTOMER_PARTITIONS, retention_ms=7 * DAY_MS)
TOUCH_DLQ = TopicSpec("touch.dlq", 3, retention_ms=30 * DAY_MS)
# The customer log and the allowed stream are the truth projections are rebuilt from, so they are kept
# forever by default; README.md says what that means for erased customers.
CUSTOMER_LOG = TopicSpec("customer.log", CUSTOMER_PARTITIONS)
CUSTOMER_ALLOWED = TopicSpec("customer.allowed", CUSTOMER_PARTITIONS)
# Touches naming identities, in one partition: the identity graph's decisions follow its single order, so a
# rebuild from it reaches the same graph (docs/identity.md). Kept forever, as the customer log is.
IDENTITY_INBOUND = TopicSpec("identity.inbound", 1)
IDENTITY_CHANGES = TopicSpec("identity.changes", CUSTOMER_PARTITIONS, retention_ms=30 * DAY_MS)
SEGMENT_DEFINITIONS = TopicSpec("segment.definitions", 1, cleanup_policy="compact")
SEGMENT_MEMBERSHIP = TopicSpec("segment.membership", CUSTOMER_PARTITIONS, retention_ms=30 * DAY_MS)

ALL_TOPICS = (
    TOUCH_INBOUND,
    TOUCH_DLQ,
    CUSTOMER_LOG,
    CUSTOMER_ALLOWED,
    IDENTITY_INBOUND,
    IDENTITY_CHANGES,
    SEGMENT_DEFINITIONS,
    SEGMENT_MEMBERSHIP,
)


def topic_name(spec: TopicSpec, prefix: str) -> str:
    """Tests run beside a demo stack on one broker: a prefix keeps their topics apart."""
    return f"{prefix}{spec.name}"
