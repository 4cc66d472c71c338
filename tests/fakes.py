"""Fakes that implement the same ports as the real adapters, for tests that need no broker."""

from collections.abc import Sequence

from shared.kafka import BrokerUnavailable


class FakePublisher:
    """Keeps what would have been published; `unavailable` makes it behave like a broker that is away."""

    def __init__(self, *, unavailable: bool = False) -> None:
        self.published: list[tuple[str, bytes, bytes]] = []
        self.unavailable = unavailable

    async def publish(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        if self.unavailable:
            raise BrokerUnavailable("fake broker is away")
        self.published.extend((topic, key, value) for key, value in records)

    async def ready(self) -> bool:
        return not self.unavailable

    async def close(self) -> None:
        return None
