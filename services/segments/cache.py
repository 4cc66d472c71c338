"""Digests kept between batches, so a batch reads and writes only the touches it adds.

Only the worker that owns a customer's partition adds touches to their digest, so a cached digest stays
exact while the partition stays with this worker, but for an identity merge, which the worker owning the
other side may carry out: it bumps the row's epoch, and a digest cached at another epoch is not used. A
digest is dropped when the partition is revoked, when a batch that used it fails (the digest may hold
that batch's touches), and least recently used first once the cache holds more than `capacity` touches.
"""

from collections import OrderedDict
from collections.abc import Iterable

from services.segments.digest import Digest


class DigestCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # customer -> partition, digest, size, epoch
        self._entries: OrderedDict[str, tuple[int, Digest, int, int]] = OrderedDict()
        self._touches = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, customer_id: str, epoch: int) -> Digest | None:
        entry = self._entries.get(customer_id)
        if entry is None or entry[3] != epoch:
            return None
        self._entries.move_to_end(customer_id)
        return entry[1]

    def keep(self, customer_id: str, partition: int, digest: Digest, epoch: int) -> None:
        self.drop([customer_id])
        self._entries[customer_id] = (partition, digest, len(digest), epoch)
        self._touches += len(digest)
        while self._touches > self.capacity and self._entries:
            self.drop([next(iter(self._entries))])

    def drop(self, customer_ids: Iterable[str]) -> None:
        for customer_id in customer_ids:
            entry = self._entries.pop(customer_id, None)
            if entry is not None:
                self._touches -= entry[2]

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        leaving = set(partitions)
        self.drop([customer for customer, entry in self._entries.items() if entry[0] in leaving])
