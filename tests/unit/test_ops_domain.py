"""The ops collector's lag: from committed offsets and partition ends alone."""

from services.ops.domain import STAGES, lag_per_partition
from shared.topics import ALL_TOPICS


def test_lag_is_what_lies_between_the_committed_offset_and_the_end() -> None:
    assert lag_per_partition({0: 7, 1: 10}, {0: 10, 1: 10, 2: 4}) == {0: 3, 1: 0, 2: 4}


def test_a_committed_offset_past_the_end_is_no_lag() -> None:
    # After a topic is recreated, say: never a negative lag.
    assert lag_per_partition({0: 12}, {0: 10}) == {0: 0}


def test_every_stage_reads_a_registered_topic() -> None:
    assert {stage.reads for stage in STAGES} <= set(ALL_TOPICS)
