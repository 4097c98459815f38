"""Offsets and records read on clients of their own, outside Faust's consumer.

Faust's consumer runs in its own thread and answers offset requests between long
fetches (about 1.5 s each when idle), which would put that delay on every batch. A
separate, group-less aiokafka client answers ``ListOffsets`` in about a millisecond, and
:class:`StateEnds` shares one answer between the batches it covers.
:class:`RangeReader` reads back records Faust skipped (see
:mod:`sharing_guard.stream.commit_gate`).
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from sharing_guard.stream.catchup import Partition


async def _groupless_consumer(
    bootstrap: list[str], fetch_max_wait_ms: int = 500
) -> AIOKafkaConsumer:
    """A started aiokafka consumer outside any group, committing nothing: it only answers
    offset requests and reads partitions it is told to."""
    client = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        fetch_max_wait_ms=fetch_max_wait_ms,
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


@dataclass(frozen=True, slots=True)
class ReadRecord:
    """A record read back, shaped like the Faust message fields the worker uses."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp: float | None


@dataclass(frozen=True, slots=True)
class ReadEvent:
    """A record read back, shaped like a Faust event (``event.message``)."""

    message: ReadRecord


class RangeReader:
    """Reads given offset ranges of partitions, and where a group resumes them."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap = bootstrap_servers.split(",")
        self._client: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaConsumer:
        if self._client is None:
            # A short fetch wait: once a range is read, the fetcher's next request (at the
            # end of the log) must not hold up the next read for the broker's default wait.
            self._client = await _groupless_consumer(self._bootstrap, fetch_max_wait_ms=20)
        return self._client

    async def resume_offset(self, group_id: str, tp: Partition) -> int:
        """The offset ``group_id`` resumes ``tp`` from: its committed offset, or the first
        offset the partition still holds when the group committed none."""
        async with self._lock:
            if self._admin is None:
                admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
                await admin.start()
                self._admin = admin
            wanted = TopicPartition(tp.topic, tp.partition)
            committed = await self._admin.list_consumer_group_offsets(group_id, partitions=[wanted])
            found = committed.get(wanted)
            if found is not None and found.offset >= 0:
                return int(found.offset)
            client = await self._started()
            starts = await client.beginning_offsets([wanted])
            return int(starts[wanted])

    async def read(self, tp: Partition, first: int, end: int, timeout_s: float) -> list[ReadEvent]:
        """The records of ``tp`` with offsets in ``[first, end)``, in offset order; offsets
        without a record (compaction, transaction markers) are simply absent. Raises
        ``TimeoutError`` when the range cannot be read within ``timeout_s``."""
        async with self._lock:
            client = await self._started()
            wanted = TopicPartition(tp.topic, tp.partition)
            client.assign([wanted])
            try:
                return await self._read(client, wanted, first, end, timeout_s)
            finally:
                # Left fetching, the client would read the partition in the background
                # (every 20 ms at the end of the log) until the next read assigns another.
                # (Paused, not unsubscribed: aiokafka's stop() can hang after that.)
                client.pause(wanted)

    @staticmethod
    async def _read(
        client: AIOKafkaConsumer, wanted: TopicPartition, first: int, end: int, timeout_s: float
    ) -> list[ReadEvent]:
        client.seek(wanted, first)
        out: list[ReadEvent] = []
        deadline = time.monotonic() + timeout_s
        while await client.position(wanted) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {wanted.topic}/{wanted.partition} {first}..{end - 1}")
            fetched = await client.getmany(wanted, timeout_ms=500)
            for record in fetched.get(wanted, []):
                if first <= record.offset < end:
                    out.append(
                        ReadEvent(
                            ReadRecord(
                                topic=record.topic,
                                partition=record.partition,
                                offset=record.offset,
                                key=record.key,
                                value=record.value if record.value is not None else b"",
                                headers=list(record.headers),
                                timestamp=record.timestamp / 1000
                                if record.timestamp is not None
                                else None,
                            )
                        )
                    )
        return out

    async def close(self) -> None:
        """Stop the clients that were started."""
        if self._client is not None:
            await self._client.stop()
            self._client = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
