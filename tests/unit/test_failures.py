"""Every processor's error classification, and finding the bad records of a refused batch write."""

from collections.abc import Sequence

import asyncpg
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NotLeaderForPartitionError,
    RecordTooLargeError,
    RequestTimedOutError,
    UnknownTopicOrPartitionError,
)
from asyncpg.exceptions._base import DataError as ClientDataError
from asyncpg.exceptions._base import InternalClientError
from hypothesis import given
from hypothesis import strategies as st

from shared.failures import Failure, classify, isolating
from shared.kafka import BrokerUnavailable


def postgres(sqlstate: str) -> asyncpg.PostgresError:
    """A server error as asyncpg raises it: the class it maps the SQLSTATE to, or the generic one."""
    error_class = asyncpg.PostgresError.get_message_class_for_sqlstate(sqlstate)  # type: ignore[attr-defined]
    error = error_class(f"server says {sqlstate}")
    error.sqlstate = sqlstate
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("08006", Failure.UNAVAILABLE),  # connection failure
        ("08003", Failure.UNAVAILABLE),  # connection does not exist
        ("57P01", Failure.UNAVAILABLE),  # admin shutdown: a restart
        ("57P02", Failure.UNAVAILABLE),  # crash shutdown
        ("57P03", Failure.UNAVAILABLE),  # cannot connect now: still starting
        ("57014", Failure.UNAVAILABLE),  # query canceled: statement timeout
        ("53300", Failure.UNAVAILABLE),  # too many connections
        ("53100", Failure.UNAVAILABLE),  # disk full
        ("40001", Failure.UNAVAILABLE),  # serialization failure
        ("40P01", Failure.UNAVAILABLE),  # deadlock detected
        ("25006", Failure.UNAVAILABLE),  # read-only transaction after a failover
        ("58030", Failure.UNAVAILABLE),  # I/O error
        ("22P05", Failure.DATA),  # untranslatable character: NUL in text
        ("22003", Failure.DATA),  # numeric value out of range
        ("22P02", Failure.DATA),  # invalid text representation
        ("23505", Failure.DATA),  # unique violation
        ("23514", Failure.DATA),  # check violation
        ("54000", Failure.DATA),  # program limit exceeded: index row too large
        ("42P01", Failure.BUG),  # undefined table: a migration not applied
        ("42601", Failure.BUG),  # syntax error
        ("42501", Failure.BUG),  # insufficient privilege
        ("XX000", Failure.BUG),  # internal error
        ("25P02", Failure.BUG),  # in failed transaction: our own mistake
    ],
)
def test_postgres_errors_are_classified_by_sqlstate(sqlstate: str, expected: Failure) -> None:
    assert classify(postgres(sqlstate)) is expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionRefusedError(), Failure.UNAVAILABLE),
        (ConnectionResetError(), Failure.UNAVAILABLE),
        (TimeoutError(), Failure.UNAVAILABLE),  # asyncpg's command_timeout, asyncio.timeout
        (asyncpg.InterfaceError("connection is closed"), Failure.UNAVAILABLE),
        (
            InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
            Failure.UNAVAILABLE,
        ),
        (ClientDataError("invalid input for query argument $1"), Failure.DATA),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), Failure.DATA),
        (OverflowError("date value out of range"), Failure.DATA),
        (BrokerUnavailable("no ack in 5 s"), Failure.UNAVAILABLE),
        (KafkaConnectionError(), Failure.UNAVAILABLE),
        (KafkaTimeoutError(), Failure.UNAVAILABLE),
        (RequestTimedOutError(), Failure.UNAVAILABLE),
        (NotLeaderForPartitionError(), Failure.UNAVAILABLE),
        (UnknownTopicOrPartitionError(), Failure.UNAVAILABLE),
        (RecordTooLargeError(), Failure.BUG),
        (KeyError("customer_id"), Failure.BUG),
        (AssertionError(), Failure.BUG),
        (AttributeError(), Failure.BUG),
    ],
)
def test_client_side_errors_are_classified_by_type(error: BaseException, expected: Failure) -> None:
    assert classify(error) is expected


def test_every_failure_kind_is_reachable() -> None:
    kinds = {classify(postgres(state)) for state in ("08006", "22P05", "42P01")}
    assert kinds == set(Failure)


class RefusingStore:
    """Refuses, as PostgreSQL refuses a whole statement, any write holding a bad record."""

    def __init__(self, bad: set[int]) -> None:
        self.bad, self.stored, self.writes = bad, list[int](), 0

    async def write(self, records: Sequence[int]) -> int:
        self.writes += 1
        if self.bad & set(records):
            raise postgres("22P05")
        self.stored += records
        return len(records)


@given(
    records=st.lists(st.integers(0, 10_000), unique=True, max_size=200),
    data=st.data(),
)
async def test_isolating_parks_exactly_the_bad_records_and_stores_the_rest_in_order(
    records: list[int], data: st.DataObject
) -> None:
    bad = set(data.draw(st.lists(st.sampled_from(records), max_size=5))) if records else set()
    store, parked = RefusingStore(bad), list[int]()

    async def park(record: int, error: BaseException) -> None:
        assert classify(error) is Failure.DATA
        parked.append(record)

    stored = await isolating(records, store.write, park, "test")
    assert store.stored == [record for record in records if record not in bad]
    assert stored == len(store.stored)
    assert sorted(parked) == sorted(bad)
    # One write when all is good; a few per bad record otherwise, never one per record.
    assert store.writes <= 1 + 2 * len(bad) * max(1, len(records)).bit_length()


async def test_isolating_does_not_swallow_bugs() -> None:
    async def broken(records: Sequence[int]) -> int:
        raise KeyError("oops")

    async def park(record: int, error: BaseException) -> None:
        raise AssertionError("a bug is not the record's fault")

    with pytest.raises(KeyError):
        await isolating([1, 2, 3], broken, park, "test")
