"""What an error means for a stream processor, decided once for every stage.

- UNAVAILABLE: the database or broker is away, busy or failing over. Wait and retry, holding the
  partition; nothing is skipped and nothing is committed meanwhile.
- DATA: this record can never be stored as it is. Park it on `touch.dlq` and go on with the others.
- BUG: anything else. Crash loudly, offsets uncommitted, so the supervisor restarts the process and
  the records are read again by code that may have been fixed.

PostgreSQL errors are told apart by SQLSTATE class (the first two characters), so an error asyncpg has
no class for is still classified; client-side errors by type. asyncpg's client-side `DataError` (a
value that cannot be encoded) subclasses `InterfaceError`, so data is asked about before interface.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import TypeVar

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from asyncpg.exceptions._base import DataError as ClientDataError  # asyncpg.DataError is SQLSTATE 22000
from asyncpg.exceptions._base import InternalClientError

log = logging.getLogger(__name__)
T = TypeVar("T")
Item = TypeVar("Item")


class Failure(StrEnum):
    UNAVAILABLE = "unavailable"
    DATA = "data"
    BUG = "bug"


SQLSTATE_CLASSES = {
    "08": Failure.UNAVAILABLE,  # connection exception
    "40": Failure.UNAVAILABLE,  # serialization failure, deadlock: the transaction may simply be rerun
    "53": Failure.UNAVAILABLE,  # insufficient resources: too many connections, disk full, out of memory
    "57": Failure.UNAVAILABLE,  # operator intervention: admin or crash shutdown, cannot connect now, canceled
    "58": Failure.UNAVAILABLE,  # system error: I/O error of the server
    "22": Failure.DATA,  # data exception: NUL in text, out-of-range value, invalid JSON, ...
    "23": Failure.DATA,  # integrity constraint violation: a record breaking a check or foreign key
    "54": Failure.DATA,  # program limit exceeded: e.g. a value too large for an index row
}
SQLSTATE_STATES = {
    "25006": Failure.UNAVAILABLE,  # read-only transaction: a replica being promoted after failover
}


class Unavailable(Exception):
    """A dependency is away; raised by adapters that have their own notion of it (e.g. a broker timeout)."""


def classify(error: BaseException) -> Failure:
    if isinstance(error, ClientDataError | UnicodeError | OverflowError):
        return Failure.DATA
    if isinstance(error, asyncpg.PostgresError):
        state = str(getattr(error, "sqlstate", "") or "")
        return SQLSTATE_STATES.get(state) or SQLSTATE_CLASSES.get(state[:2], Failure.BUG)
    if isinstance(error, OSError | TimeoutError | asyncpg.InterfaceError | InternalClientError | Unavailable):
        # InterfaceError: the connection closed under the query, or the pool is being closed.
        # InternalClientError ("cannot switch to state 15; another operation is in progress"): asyncpg's
        # protocol confused by a server that went away mid-transaction (asyncpg#784); the pool terminates
        # that connection on release, so a retry gets a fresh one. Seen in the PostgreSQL-restart scenario.
        return Failure.UNAVAILABLE
    if isinstance(error, KafkaTimeoutError | KafkaConnectionError):
        return Failure.UNAVAILABLE  # a request outlived its time: not `retriable` in aiokafka's own table
    if isinstance(error, KafkaError):
        return Failure.UNAVAILABLE if error.retriable else Failure.BUG
    return Failure.BUG


async def while_unavailable(work: Callable[[], Awaitable[T]], what: str, max_backoff: float = 5.0) -> T:
    """Runs `work` until it succeeds, waiting out UNAVAILABLE errors; DATA and BUG errors propagate.

    Waiting holds the partition, which is what a projection that must not skip anything should do
    while its database or broker is away.
    """
    backoff = 0.1
    while True:
        try:
            return await work()
        except Exception as error:  # classified right here: only UNAVAILABLE is waited out
            if classify(error) is not Failure.UNAVAILABLE:
                raise
            log.warning(
                "dependency unavailable; retrying", extra={"what": what, "error": repr(error), "in": backoff}
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)


async def isolating(
    items: Sequence[Item],
    write: Callable[[Sequence[Item]], Awaitable[int]],
    park: Callable[[Item, BaseException], Awaitable[None]],
    what: str,
) -> int:
    """Writes `items`, and when a DATA error refuses the write, finds the record(s) at fault by halving.

    Good records beside a bad one are written, in order, in their own smaller writes; only the items
    that fail alone are parked. Costs O(bad * log n) extra writes, none while every record is good.
    `write` must be idempotent (a half may be retried after the whole failed) and return rows stored.
    """
    try:
        return await while_unavailable(lambda: write(items), what)
    except Exception as error:
        if classify(error) is not Failure.DATA:
            raise
        if len(items) == 1:
            await park(items[0], error)
            return 0
        middle = len(items) // 2
        first = await isolating(items[:middle], write, park, what)
        return first + await isolating(items[middle:], write, park, what)
