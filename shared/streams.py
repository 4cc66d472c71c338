"""Stream processors configured the same way: the batch loops' consumers, and Faust apps."""

from typing import Any

import faust
from aiokafka import AIOKafkaConsumer

from shared.kafka import create_consumer
from shared.settings import TouchlineSettings
from shared.topics import TopicSpec


class StreamSettings(TouchlineSettings):
    # A SIGKILLed worker's partitions move to a survivor only after this; short enough for fast recovery.
    stream_session_timeout_seconds: float = 10.0
    stream_commit_interval_seconds: float = 1.0
    # A Kafka transaction (or a transactional producer's start or stop) not done by then is retried.
    stream_transaction_timeout_seconds: float = 30.0
    # How long a batch processor waits for more records once a batch has begun (see kafka.poll_batch).
    stream_batch_linger_seconds: float = 0.05


def group_id(settings: TouchlineSettings, name: str) -> str:
    """A processor's consumer group, named as its Faust app was, so committed offsets carry over."""
    return f"{settings.topic_prefix}touchline-{name}"


def create_batch_consumer(settings: StreamSettings, name: str) -> AIOKafkaConsumer:
    """The consumer of a batch processor: large fetches, and a dead worker's partitions moved on soon."""
    return create_consumer(
        settings,
        group_id=group_id(settings, name),
        max_partition_fetch_bytes=4 * 1024 * 1024,
        session_timeout_ms=int(settings.stream_session_timeout_seconds * 1000),
        heartbeat_interval_ms=int(settings.stream_session_timeout_seconds * 200),
    )


def create_stream_app(settings: StreamSettings, name: str, **overrides: Any) -> faust.App:
    """A Faust app whose group and internal topics carry the topic prefix, so tests stay isolated."""
    options: dict[str, Any] = {
        "broker": f"kafka://{settings.kafka_bootstrap}",
        "store": "memory://",
        "processing_guarantee": "at_least_once",
        "producer_acks": -1,
        "broker_session_timeout": settings.stream_session_timeout_seconds,
        "broker_heartbeat_interval": settings.stream_session_timeout_seconds / 5,
        "broker_commit_interval": settings.stream_commit_interval_seconds,
        "consumer_auto_offset_reset": "earliest",
        "topic_replication_factor": settings.kafka_replication_factor,
        "topic_allow_declare": True,
        "web_enabled": False,
    }
    return faust.App(group_id(settings, name), **(options | overrides))


def raw_topic(app: faust.App, settings: TouchlineSettings, spec: TopicSpec) -> faust.TopicT:
    """A topic read and written as bytes: decoding is ours, so a bad record can never crash an agent."""
    return app.topic(
        settings.topic(spec),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=spec.partitions,
    )
