"""Kafka-native ingest: `touch.inbound` records get the HTTP checks, then are forwarded or dead-lettered."""

from datetime import UTC, datetime

import faust
from faust.types import StreamT
from prometheus_client import start_http_server

from services.ingest.domain import (
    Rejected,
    dead_letter_headers,
    inbound_source,
    parse_record,
    stamped_records,
)
from services.ingest.metrics import DEAD_LETTERS, EVENTS_ACCEPTED, EVENTS_REJECTED
from services.ingest.settings import IngestSettings
from shared.streams import create_stream_app, raw_topic
from shared.topics import CUSTOMER_LOG, TOUCH_DLQ, TOUCH_INBOUND


def create_processor(settings: IngestSettings) -> faust.App:
    app = create_stream_app(settings, "ingest")
    inbound = raw_topic(app, settings, TOUCH_INBOUND)
    customer_log = raw_topic(app, settings, CUSTOMER_LOG)
    dead_letters = raw_topic(app, settings, TOUCH_DLQ)
    policy = settings.policy()

    @app.agent(inbound)
    async def validate_inbound(stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            message, now = event.message, datetime.now(UTC)
            try:
                source = inbound_source(message.headers or [])
                touch = parse_record(message.value, now, policy)
            except Rejected as rejected:
                origin = f"{message.topic}/{message.partition}/{message.offset}"
                await dead_letters.send(
                    key=message.key, value=message.value, headers=dead_letter_headers(rejected, now, origin)
                )
                EVENTS_REJECTED.labels("kafka", rejected.error).inc()
                DEAD_LETTERS.labels(rejected.error).inc()
                continue
            [(key, value)] = stamped_records([touch], now, source)
            await customer_log.send(key=key, value=value)
            EVENTS_ACCEPTED.labels(source, "kafka").inc()

    @app.task
    async def expose_metrics() -> None:
        start_http_server(settings.ingest_worker_metrics_port, addr=settings.ingest_host)

    return app
