"""End offsets of state partitions, read on a client of their own.

Faust's consumer runs in its own thread and answers offset requests between long
fetches (about 1.5 s each when idle), which would put that delay on every batch. A
separate, group-less aiokafka client answers ``ListOffsets`` in about a millisecond.
"""

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from sharing_guard.stream.catchup import Partition


class EndOffsets:
    """Reads the current end offset (high watermark) of partitions; starts on first use."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap = bootstrap_servers.split(",")
        self._client: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def _started(self) -> AIOKafkaConsumer:
        async with self._lock:
            if self._client is None:
                client = AIOKafkaConsumer(
                    bootstrap_servers=self._bootstrap,
                    enable_auto_commit=False,
                    group_id=None,
                    isolation_level="read_uncommitted",
                )
                await client.start()
                self._client = client
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
