"""Building customer logs for consent tests and reading back what the filter made of them."""

import random
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import ConsumerRecord

from shared.events import (
    AllowedRecord,
    ConsentChange,
    ConsentStatus,
    CustomerLogRecord,
    Purpose,
    TouchEvent,
)
from shared.serialization import decode_allowed, decode_customer_log, encode
from shared.settings import TouchlineSettings
from shared.topics import CUSTOMER_ALLOWED, CUSTOMER_LOG
from tests.helpers import consume_until, produce

AT = datetime(2026, 11, 20, 12, tzinfo=UTC)


def random_log(customers: list[str], length: int, seed: int) -> list[CustomerLogRecord]:
    """Touches with consent changes (about one in eight, some erasures) of `customers`, interleaved."""
    rng = random.Random(seed)
    log: list[CustomerLogRecord] = []
    for number in range(length):
        customer = rng.choice(customers)
        if rng.random() < 0.875:
            log.append(
                TouchEvent(
                    event_id=f"{customer}-e{number}",
                    customer_id=customer,
                    type="page.viewed",
                    channel="web",
                    occurred_at=AT,
                    received_at=AT,
                    source="test",
                )
            )
        else:
            status = rng.choice(list(ConsentStatus))
            log.append(
                ConsentChange(
                    change_id=f"{customer}-c{number}",
                    customer_id=customer,
                    purpose=rng.choice(list(Purpose)),
                    status=status,
                    changed_at=AT,
                    source="test",
                    erasure=status is ConsentStatus.DENIED and rng.random() < 0.2,
                )
            )
    return log


async def append_to_log(settings: TouchlineSettings, log: list[CustomerLogRecord]) -> None:
    records: list[tuple[bytes | None, bytes | None]] = [
        (record.customer_id.encode(), encode(record)) for record in log
    ]
    await produce(settings.kafka_bootstrap, settings.topic(CUSTOMER_LOG), records)


async def read_log(settings: TouchlineSettings, customers: set[str], count: int) -> list[CustomerLogRecord]:
    """The customers' records as the broker ordered them (per customer, which is what consent needs)."""
    records = await consume_until(
        settings.kafka_bootstrap,
        settings.topic(CUSTOMER_LOG),
        lambda kept: len(kept) >= count,
        keep=lambda record: record.key.decode() in customers,
    )
    return [decode_customer_log(record.value) for record in records]


AllowedRecords = list[AllowedRecord]


async def read_allowed(
    settings: TouchlineSettings, customers: set[str], done: Callable[[AllowedRecords], bool], timeout: float
) -> AllowedRecords:
    """The customers' allowed-stream records, read until `done` holds for them (TimeoutError otherwise)."""
    decoded: AllowedRecords = []

    def enough(kept: list[ConsumerRecord]) -> bool:
        decoded[len(decoded) :] = [decode_allowed(record.value) for record in kept[len(decoded) :]]
        return done(decoded)

    await consume_until(
        settings.kafka_bootstrap,
        settings.topic(CUSTOMER_ALLOWED),
        enough,
        keep=lambda record: record.key.decode() in customers,
        timeout=timeout,
    )
    return decoded
