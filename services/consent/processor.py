"""The consent filter: the customer log in, the allowed stream out, consent state in a changelog table."""

import time
from functools import partial

import faust
from faust.types import StreamT
from prometheus_client import start_http_server
from pydantic import ValidationError

from services.consent.domain import AllowedOutput, Decision, filter_record, load_state
from services.consent.metrics import CHANGES, DECISIONS, DROPPED, ERASE_MARKERS, FILTER_LAG, UNREADABLE
from services.consent.settings import ConsentSettings
from services.consent.store import ConsentStore
from shared.db import create_pool, until_committed
from shared.events import AllowedTouch, ConsentChange, CustomerLogRecord, Purpose, TouchEvent
from shared.kafka import parked_headers
from shared.serialization import decode_customer_log, encode
from shared.streams import create_stream_app, raw_topic
from shared.topics import CUSTOMER_ALLOWED, CUSTOMER_LOG, CUSTOMER_PARTITIONS, TOUCH_DLQ


def _count(record: CustomerLogRecord, outputs: list[AllowedOutput]) -> None:
    if isinstance(record, TouchEvent):
        allowed = next(
            (output.purposes for output in outputs if isinstance(output, AllowedTouch)), frozenset()
        )
        for purpose in Purpose:
            DECISIONS.labels(purpose.value, "allowed" if purpose in allowed else "denied").inc()
        if not allowed:
            DROPPED.inc()
    else:
        CHANGES.labels(record.purpose.value, record.status.value).inc()
        ERASE_MARKERS.labels(record.purpose.value).inc(len(outputs))


def create_processor(settings: ConsentSettings) -> faust.App:
    app = create_stream_app(settings, "consent")
    customer_log = raw_topic(app, settings, CUSTOMER_LOG)
    allowed = raw_topic(app, settings, CUSTOMER_ALLOWED)
    dead_letters = raw_topic(app, settings, TOUCH_DLQ)
    # Keyed by customer and written while handling that customer's record, so each changelog partition
    # matches the customer-log partition it came from (co-partitioned, 12 and 12).
    consent = app.Table("consent-state", default=dict, partitions=CUSTOMER_PARTITIONS, key_type=str)
    defaults = settings.default_consent()

    @app.agent(customer_log)
    async def filter_consent(stream: StreamT[bytes]) -> None:
        pool = await create_pool(settings.pg_dsn.get_secret_value(), max_size=2)
        store = ConsentStore(pool)
        try:
            await _filter(stream, store)
        finally:
            await pool.close()

    async def _filter(stream: StreamT[bytes], store: ConsentStore) -> None:
        async for event in stream.events():
            message = event.message
            try:
                record = decode_customer_log(message.value or b"")
            except ValidationError as error:
                # Only Touchline writes the customer log: park an unreadable record, never skip it silently.
                UNREADABLE.inc()
                origin = f"{message.topic}/{message.partition}/{message.offset}"
                headers = parked_headers(str(error), origin)
                await dead_letters.send(key=message.key, value=message.value, headers=headers)
                continue
            decision: Decision = filter_record(
                record, message.offset, load_state(consent[record.customer_id]), defaults
            )
            if isinstance(record, ConsentChange):
                audit = partial(store.record, record, message.partition, message.offset)
                await until_committed(audit, "consent audit")
                consent[record.customer_id] = decision.state
            for output in decision.outputs:
                await allowed.send(key=record.customer_id.encode(), value=encode(output))
            _count(record, decision.outputs)
            FILTER_LAG.observe(max(0.0, time.time() - message.timestamp))

    @app.task
    async def expose_metrics() -> None:
        start_http_server(settings.consent_worker_metrics_port, addr=settings.consent_host)

    return app
