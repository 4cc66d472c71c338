"""The ops collector against the real broker: a stage's lag read from its group's committed offsets."""

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import REGISTRY

from services.ops.processor import _collect_kafka
from services.ops.settings import OpsSettings
from shared.settings import TouchlineSettings
from shared.streams import group_id
from shared.topics import TOUCH_INBOUND
from tests.helpers import produce


@pytest.fixture
def ops_settings(own_topics: TouchlineSettings) -> OpsSettings:
    return OpsSettings(topic_prefix=own_topics.topic_prefix)


def lag(group: str, topic: str, partition: int) -> float | None:
    labels = {"group": group, "topic": topic, "partition": str(partition)}
    return REGISTRY.get_sample_value("touchline_ops_consumer_lag_records", labels)


async def test_a_stage_lags_by_what_its_group_has_not_committed(ops_settings: OpsSettings) -> None:
    settings = ops_settings
    topic, group = settings.topic(TOUCH_INBOUND), group_id(settings, "ingest")
    await produce(settings.kafka_bootstrap, topic, [(b"same-key", f"r{n}".encode()) for n in range(7)])
    committer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group)
    await committer.start()
    partition = next(  # the one partition the key went to
        tp.partition
        for tp, end in (await committer.end_offsets([TopicPartition(topic, p) for p in range(12)])).items()
        if end == 7
    )
    committer.assign([TopicPartition(topic, partition)])
    try:
        await committer.commit({TopicPartition(topic, partition): OffsetAndMetadata(3, "")})
    finally:
        await committer.stop()

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    ends = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed")
    await admin.start()
    await ends.start()
    try:
        await _collect_kafka(admin, ends, settings)
    finally:
        await ends.stop()
        await admin.close()
    assert lag(group, topic, partition) == 4
    assert lag(group, topic, (partition + 1) % 12) == 0
    assert REGISTRY.get_sample_value("touchline_ops_dependency_up", {"dependency": "kafka"}) == 1
