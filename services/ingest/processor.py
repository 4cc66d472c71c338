"""Kafka-native ingest: `touch.inbound` records get the HTTP checks, then are forwarded or dead-lettered.

A Faust agent: this path measures fast enough (a few thousand records a second on one core) and does no
database work. Faust acks an event whose handler raised, so no error may escape the handler: an invalid
record is parked, a broker away is waited out, and anything else ends the process before the event is
acked, so the supervisor restarts it and the record is read again.
"""

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial

import faust
from faust.types import Message, StreamT
from prometheus_client import start_http_server

from services.ingest.domain import (
    DEFAULT_INBOUND_SOURCE,
    dead_letter_headers,
    inbound_source,
    parse_record,
    routed_records,
)
from services.ingest.metrics import DEAD_LETTERS, EVENTS_ACCEPTED, EVENTS_REJECTED
from services.ingest.settings import IngestSettings
from shared.errors import Rejected
from shared.failures import while_unavailable
from shared.kafka import origin_of
from shared.streams import create_stream_app, raw_topic
from shared.topics import CUSTOMER_LOG, IDENTITY_INBOUND, TOUCH_DLQ, TOUCH_INBOUND

log = logging.getLogger(__name__)
STAGE = "ingest-worker"
# EX_SOFTWARE from sysexits.h: an internal error, for the supervisor's log.
EXIT_BUG = 70


def create_processor(settings: IngestSettings) -> faust.App:
    app = create_stream_app(settings, "ingest")
    inbound = raw_topic(app, settings, TOUCH_INBOUND)
    customer_log = raw_topic(app, settings, CUSTOMER_LOG)
    identity_inbound = raw_topic(app, settings, IDENTITY_INBOUND)
    dead_letters = raw_topic(app, settings, TOUCH_DLQ)
    policy = settings.policy()

    @app.agent(inbound)
    async def validate_inbound(stream: StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                await while_unavailable(partial(forward, event.message), "inbound touch")
            except Exception as error:
                # Not a record's fault (those are Rejected) nor the broker being away: a bug. Exit now,
                # before Faust acks the event; os._exit because Faust would otherwise shut down gracefully
                # and commit what it acked.
                log.critical("ingest worker failed; exiting", extra={"error": repr(error)}, exc_info=error)
                os._exit(EXIT_BUG)

    async def forward(message: Message) -> None:
        now = datetime.now(UTC)
        try:
            headers = message.headers or []
            source = inbound_source(list(headers.items()) if isinstance(headers, Mapping) else headers)
            touch = parse_record(message.value, now, policy)
        except Rejected as rejected:
            await dead_letters.send(
                key=message.key,
                value=message.value,
                headers=dead_letter_headers(rejected, now, STAGE, origin_of(message)),
            )
            EVENTS_REJECTED.labels("kafka", rejected.error).inc()
            DEAD_LETTERS.labels(rejected.error).inc()
            return
        routed = routed_records([touch], now, source)
        for topic, records in (
            (customer_log, routed.customer_log),
            (identity_inbound, routed.identity_inbound),
        ):
            for key, value in records:
                await topic.send(key=key, value=value)
        # Any producer can write any `source` header: as a label it would be unbounded. HTTP sources come
        # from configured keys, so they are labels there; here the record keeps its source, the metric not.
        EVENTS_ACCEPTED.labels(DEFAULT_INBOUND_SOURCE, "kafka").inc()

    @app.task
    async def expose_metrics() -> None:
        start_http_server(settings.ingest_worker_metrics_port, addr=settings.ingest_host)

    return app
