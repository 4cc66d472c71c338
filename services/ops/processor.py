"""The operations collector: every few seconds, each stage's lag read from the broker, and whether Kafka
and PostgreSQL answer, exported for Prometheus. It writes nothing and holds no state, so any number of
them may run; one is enough."""

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import start_http_server

from services.ops.domain import STAGES, Stage, lag_per_partition
from services.ops.metrics import CONSUMER_LAG, DEPENDENCY_UP
from services.ops.settings import OpsSettings
from shared.db import answers, create_pool
from shared.failures import Failure, classify
from shared.streams import group_id

log = logging.getLogger(__name__)


async def _stage_lag(
    admin: AIOKafkaAdminClient, ends_reader: AIOKafkaConsumer, settings: OpsSettings, stage: Stage
) -> None:
    topic, group = settings.topic(stage.reads), group_id(settings, stage.name)
    partitions = [TopicPartition(topic, number) for number in range(stage.reads.partitions)]
    committed = {
        tp.partition: offset.offset
        for tp, offset in (await admin.list_consumer_group_offsets(group, partitions=partitions)).items()
        if offset.offset >= 0
    }
    ends = {tp.partition: end for tp, end in (await ends_reader.end_offsets(partitions)).items()}
    for partition, lag in lag_per_partition(committed, ends).items():
        CONSUMER_LAG.labels(group, topic, str(partition)).set(lag)


async def _collect_kafka(
    admin: AIOKafkaAdminClient, ends_reader: AIOKafkaConsumer, settings: OpsSettings
) -> None:
    try:
        for stage in STAGES:
            await _stage_lag(admin, ends_reader, settings, stage)
        DEPENDENCY_UP.labels("kafka").set(1)
    except Exception as error:
        if classify(error) is not Failure.UNAVAILABLE:
            raise
        DEPENDENCY_UP.labels("kafka").set(0)
        log.warning("kafka did not answer the collector", extra={"error": type(error).__name__})


async def run_collector(settings: OpsSettings) -> None:
    start_http_server(settings.ops_worker_metrics_port, addr=settings.ops_host)
    pool = await create_pool(settings.pg_dsn.get_secret_value(), max_size=1)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    # Reads partition ends as the stages see them: read_committed, so an open transaction is not counted.
    ends_reader = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed"
    )
    await admin.start()
    await ends_reader.start()
    try:
        while True:
            await _collect_kafka(admin, ends_reader, settings)
            DEPENDENCY_UP.labels("postgresql").set(1 if await answers(pool) else 0)
            await asyncio.sleep(settings.ops_interval_seconds)
    finally:
        await ends_reader.stop()
        await admin.close()
        await pool.close()
