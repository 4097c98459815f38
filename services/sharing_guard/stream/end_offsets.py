"""End offsets of state partitions, read on a client of their own, and shared between the
batches one reading covers.

The group consumer answers offset requests only between its fetches (up to
``fetch_max_wait_ms`` each when idle), which would put that delay on every batch. A
separate, group-less aiokafka client answers ``ListOffsets`` in about a millisecond, and
:class:`StateEnds` shares one answer between the batches it covers.
"""

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition


class Partition(NamedTuple):
    """A topic partition (hashable, comparable, printable)."""

    topic: str
    partition: int


async def _groupless_consumer(bootstrap: list[str]) -> AIOKafkaConsumer:
    """A started aiokafka consumer outside any group, committing nothing: it only answers
    offset requests."""
    client = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_uncommitted",
        auto_offset_reset="earliest",
    )
    await client.start()
    return client


class EndOffsets:
    """Reads the current end offset (high watermark) of partitions; starts on first use."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap = bootstrap_servers.split(",")
        self._client: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaConsumer:
        async with self._lock:
            if self._client is None:
                self._client = await _groupless_consumer(self._bootstrap)
            return self._client

    async def __call__(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The end offset of each partition (one request per broker)."""
        wanted = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        if not wanted:
            return {}
        client = await self._started()
        ends = await client.end_offsets(wanted)
        return {Partition(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    async def beginnings(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The first offset each partition still holds (one request per broker)."""
        wanted = [TopicPartition(tp.topic, tp.partition) for tp in partitions]
        if not wanted:
            return {}
        client = await self._started()
        starts = await client.beginning_offsets(wanted)
        return {Partition(tp.topic, tp.partition): int(start) for tp, start in starts.items()}

    async def close(self) -> None:
        """Stop the client, if it was started."""
        if self._client is not None:
            await self._client.stop()
            self._client = None


@dataclass(frozen=True, slots=True)
class Reading:
    """End offsets of state partitions read once (``ends``), in consumer generation
    ``generation``, asked for after the consumer had seen each input partition's high
    watermark in ``covers``: every input record below it was in the log already."""

    generation: int
    covers: Mapping[Partition, int]
    ends: Mapping[Partition, int]

    def serves(
        self, generation: int, inputs: Mapping[Partition, int], state: Iterable[Partition]
    ) -> bool:
        """Whether this reading stands for one taken after the input records were
        produced (``inputs``: the highest offset of each input partition), for every
        partition of ``state``."""
        return (
            generation == self.generation
            and all(offset < self.covers.get(tp, 0) for tp, offset in inputs.items())
            and all(tp in self.ends for tp in state)
        )


class StateEnds:
    """The state end offsets a batch of input records must be caught up to, with one
    ``ListOffsets`` request shared by every batch it covers.

    The ordering promise needs end offsets read after the batch's records were produced.
    A reading asked for after the consumer saw an input partition's high watermark at
    ``H`` was taken after every record below ``H`` was in the log, so it serves any
    later batch whose records lie below ``H`` (a state record acknowledged before such a
    record was produced lies below the reading's end offset). Through a backlog one
    request then serves many batches; at the head of the log, each batch reads afresh.
    """

    def __init__(self, read: Callable[[list[Partition]], Awaitable[dict[Partition, int]]]) -> None:
        self._read = read
        self._last: Reading | None = None
        self.requests = 0
        self.shared = 0

    def reuse(
        self, generation: int, inputs: Mapping[Partition, int], state: Iterable[Partition]
    ) -> dict[Partition, int] | None:
        """The end offsets of ``state`` from the last reading, if it serves these inputs."""
        last = self._last
        if last is None or not last.serves(generation, inputs, state):
            return None
        self.shared += 1
        return {tp: last.ends[tp] for tp in state}

    async def read(
        self,
        generation: int,
        covers: Mapping[Partition, int],
        partitions: list[Partition],
        state: Iterable[Partition],
    ) -> dict[Partition, int]:
        """Read the end offsets of ``partitions`` (a superset of ``state``, so the reading
        serves later batches too) and keep them; ``covers`` must have been taken before
        this is called. Returns those of ``state``."""
        self.requests += 1
        ends = await self._read(partitions)
        self._last = Reading(generation, dict(covers), ends)
        return {tp: ends[tp] for tp in state}
