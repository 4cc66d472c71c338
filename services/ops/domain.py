"""What the operations collector computes: each stage's lag, from offsets alone.

A stage's lag on a partition is how many records lie between what its consumer group has committed and
the partition's end. Read from the broker, not from a worker's own view, it is right when a worker is
frozen or gone, which is exactly when it matters. On a topic written in Kafka transactions a caught-up
group lags by one: the transaction's commit marker takes an offset no consumer ever reads.
"""

from collections.abc import Mapping
from typing import NamedTuple

from shared.topics import CUSTOMER_ALLOWED, CUSTOMER_LOG, IDENTITY_INBOUND, TOUCH_INBOUND, TopicSpec


class Stage(NamedTuple):
    name: str  # also its consumer group's name (shared.streams.group_id)
    reads: TopicSpec


# Every stage that consumes, with the topic it reads.
STAGES = (
    Stage("ingest", TOUCH_INBOUND),
    Stage("identity", IDENTITY_INBOUND),
    Stage("consent", CUSTOMER_LOG),
    Stage("timeline", CUSTOMER_ALLOWED),
    Stage("segments", CUSTOMER_ALLOWED),
)


def lag_per_partition(committed: Mapping[int, int], ends: Mapping[int, int]) -> dict[int, int]:
    """Records not yet consumed per partition; a partition with nothing committed lags by all it holds."""
    return {partition: max(0, end - committed.get(partition, 0)) for partition, end in ends.items()}
