"""The timeline projector: the allowed stream, in batches, into PostgreSQL."""

import time
from functools import partial

import faust
from faust.types import EventT, StreamT
from prometheus_client import start_http_server

from services.timeline.domain import plan_batch
from services.timeline.metrics import (
    BATCH_SECONDS,
    BATCH_SIZE,
    CONSUMER_LAG,
    CUSTOMERS_ERASED,
    END_TO_END_SECONDS,
    EVENTS_PROJECTED,
)
from services.timeline.settings import TimelineSettings
from services.timeline.store import TimelineStore
from shared.db import create_pool, until_committed
from shared.events import AllowedRecord, AllowedTouch
from shared.serialization import decode_allowed
from shared.streams import create_stream_app, raw_topic
from shared.topics import CUSTOMER_ALLOWED


def _observe(
    app: faust.App, events: list[EventT[bytes]], records: list[AllowedRecord], committed_at: float
) -> None:
    for record in records:
        if isinstance(record, AllowedTouch):
            END_TO_END_SECONDS.observe(max(0.0, committed_at - record.event.received_at.timestamp()))
    last = events[-1].message
    highwater = app.consumer.highwater(last.tp)
    if highwater is not None:
        CONSUMER_LAG.labels(str(last.partition)).set(max(0, highwater - last.offset - 1))


def create_processor(settings: TimelineSettings) -> faust.App:
    app = create_stream_app(settings, "timeline")
    allowed = raw_topic(app, settings, CUSTOMER_ALLOWED)

    @app.agent(allowed)
    async def project_timeline(stream: StreamT[bytes]) -> None:
        pool = await create_pool(settings.pg_dsn.get_secret_value(), max_size=2)
        store = TimelineStore(pool)
        try:
            # take_events acks a batch only when the next one is requested, i.e. after apply_batch has
            # committed: offsets never run ahead of the database.
            take_events = stream.take_events  # type: ignore[attr-defined]  # missing from faust's StreamT
            async for events in take_events(
                settings.timeline_batch_max, within=settings.timeline_batch_seconds
            ):
                records = [decode_allowed(event.message.value or b"") for event in events]
                plan = plan_batch(records)
                started = time.perf_counter()
                stored = await until_committed(partial(store.apply_batch, plan), "timeline batch")
                BATCH_SECONDS.observe(time.perf_counter() - started)
                BATCH_SIZE.observe(len(events))
                EVENTS_PROJECTED.inc(stored)
                CUSTOMERS_ERASED.inc(len(plan.erase))
                _observe(app, events, records, time.time())
        finally:
            await pool.close()

    @app.task
    async def expose_metrics() -> None:
        start_http_server(settings.timeline_worker_metrics_port, addr=settings.timeline_host)

    return app
