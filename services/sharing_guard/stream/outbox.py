"""The records one processing step produces, sent together: one Kafka record batch per
partition instead of one producer call per record.

Faust's ``Topic.send`` and aiokafka's ``send`` each cost tens of microseconds per record
(a future per record, the partitioner, the accumulator's bookkeeping); appending a record
to a batch that is already being built costs about one. The guard produces three or four
records per decision, so this is most of what its output costs (benchmarks/README.md).

An :class:`Outbox` keeps the order of the records it is given within each partition, and
picks a record's partition the way aiokafka's default partitioner does (murmur2 of the
key; a record without key goes to a random available partition), so records keyed like
before land where they landed before.
"""

import asyncio
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.record.default_records import DefaultRecordBatchBuilder

Headers = Sequence[tuple[str, bytes]]
_PARTITIONER = DefaultPartitioner()


@lru_cache(maxsize=65_536)
def _key_index(key: bytes, partitions: int) -> int:
    """Which of ``partitions`` (sorted) a key goes to: aiokafka's default partitioner
    (murmur2, in pure Python, so worth remembering for the accounts seen recently)."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


class Delivery(NamedTuple):
    """One record batch handed to the producer: where it goes, how many records it
    holds, and the future of the broker's answer (its metadata names the batch's first
    offset)."""

    topic: str
    partition: int
    records: int
    future: "asyncio.Future[Any]"


class Outbox:
    """Records waiting to be produced; :meth:`send` hands them to the producer."""

    def __init__(self) -> None:
        self._records: list[tuple[str, int | None, bytes | None, bytes | None, Headers]] = []

    def __len__(self) -> int:
        return len(self._records)

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue a record for ``topic``, in ``partition`` if given, else by its key."""
        # aiokafka's record builder takes headers as a list and nothing else.
        listed = headers if isinstance(headers, list) else list(headers or ())
        self._records.append((topic, partition, key, value, listed))

    async def send(self, producer: Any, max_request_size: int) -> list[Delivery]:
        """Hand every queued record to ``producer`` (a started ``AIOKafkaProducer``
        configured with ``max_request_size``) and empty the outbox; returns one
        :class:`Delivery` per record batch, in the order they were handed over, whose
        future is done when the broker has acknowledged the batch (raising if it could
        not be written).

        A batch that fills up is sent and another begun, so a partition may take several.
        Raises ``MessageSizeTooLargeError`` before sending anything when a record is
        larger than ``max_request_size`` (as aiokafka's ``send`` does), and what the
        producer raises (e.g. when it is closed); then nothing of the batches not yet
        handed over is sent.
        """
        records, self._records = self._records, []
        if not records:
            return []
        limit = max_request_size
        for topic, _, key, value, headers in records:  # as aiokafka's send() checks
            size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
            if size > limit:
                raise MessageSizeTooLargeError(
                    f"a record for {topic} is {size} bytes, more than the producer's "
                    f"max_request_size ({limit}); nothing of this outbox was sent"
                )
        cluster = producer.client.cluster
        grouped: dict[tuple[str, int], list[tuple[bytes | None, bytes | None, Headers]]] = {}
        partitions: dict[str, tuple[list[int], list[int]]] = {}
        for topic, explicit, key, value, headers in records:
            partition = explicit
            if partition is None:
                known = partitions.get(topic)
                if known is None:  # partitions_for waits for the topic's metadata
                    known = partitions[topic] = (
                        sorted(await producer.partitions_for(topic)),
                        list(cluster.available_partitions_for_topic(topic) or ()),
                    )
                if key is None:
                    partition = _PARTITIONER(None, *known)
                else:
                    partition = known[0][_key_index(key, len(known[0]))]
            grouped.setdefault((topic, partition), []).append((key, value, headers))
        sent: list[Delivery] = []
        for (topic, partition), items in grouped.items():
            batch = producer.create_batch()
            count = 0
            for key, value, headers in items:
                if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    future = await producer.send_batch(batch, topic, partition=partition)
                    sent.append(Delivery(topic, partition, count, future))
                    batch, count = producer.create_batch(), 0
                    # An empty batch takes any one record, whatever its size.
                    batch.append(timestamp=None, key=key, value=value, headers=headers)
                count += 1
            future = await producer.send_batch(batch, topic, partition=partition)
            sent.append(Delivery(topic, partition, count, future))
        return sent
