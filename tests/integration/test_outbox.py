"""The guard's outbox on the real broker: records produced a batch per partition land
where per-record sends would put them, in order, with their headers, and the futures it
returns are done only once the broker holds them."""

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from kafka.admin import NewTopic
from sharing_guard.stream.outbox import Outbox

PARTITIONS = 4
LIMIT = 256 * 1024  # the producer's max_request_size, as the guard passes its own


async def _produce_and_read(bootstrap: str, topic: str) -> tuple[dict[bytes, int], list[Any]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=LIMIT)
    await producer.start()
    try:
        # Where aiokafka's own per-record send puts each key: the outbox must agree.
        reference = {}
        for i in range(40):
            key = f"acct-{i}".encode()
            metadata = await (await producer.send(topic + ".ref", b"x", key=key))
            reference[key] = metadata.partition
        outbox = Outbox()
        for i in range(200):  # 200 records of 1 kB: several record batches per partition
            outbox.add(
                topic,
                f"acct-{i % 40}".encode(),
                f"{i:04d}".encode() + b"." * 1000,
                [("seq", str(i).encode())],
            )
        outbox.add(topic, None, b"explicit", (("seq", b"explicit"),), partition=2)
        outbox.add(topic, None, b"keyless")
        assert len(outbox) == 202
        deliveries = await outbox.send(producer, LIMIT)
        futures = [d.future for d in deliveries]
        assert len(outbox) == 0
        assert sum(d.records for d in deliveries) == 202
        assert len(futures) > PARTITIONS  # full batches were sent and new ones begun
        await asyncio.gather(*futures)
        assert all(f.done() and f.exception() is None for f in futures)
        assert await outbox.send(producer, LIMIT) == []  # an empty outbox sends nothing
        # A record the producer could never send refuses the whole outbox, up front.
        outbox.add(topic, b"acct-0", b"never sent")
        outbox.add(topic, b"acct-1", b"x" * (LIMIT + 1))
        with pytest.raises(MessageSizeTooLargeError, match="max_request_size"):
            await outbox.send(producer, LIMIT)
        assert len(outbox) == 0
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    records: list[Any] = []
    try:  # everything in the topic, up to its end offsets
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return reference, records


def test_outbox_places_orders_and_acknowledges_like_per_record_sends(
    kafka_bootstrap: str, kafka_admin: Any
) -> None:
    topic = f"test.outbox.{uuid.uuid4().hex[:8]}"
    kafka_admin.create_topics(
        [NewTopic(topic, PARTITIONS, 1), NewTopic(topic + ".ref", PARTITIONS, 1)]
    )
    try:
        reference, records = asyncio.run(_produce_and_read(kafka_bootstrap, topic))
    finally:
        kafka_admin.delete_topics([topic, topic + ".ref"])
    keyed = [r for r in records if r.key is not None]
    assert len(keyed) == 200
    for record in keyed:
        assert record.partition == reference[record.key], record.key
        assert dict(record.headers)["seq"] == str(int(record.value[:4])).encode()
    for partition in range(PARTITIONS):  # the order of add() within each partition
        seqs = [int(r.value[:4]) for r in keyed if r.partition == partition]
        assert seqs == sorted(seqs)
    (explicit,) = [r for r in records if r.value == b"explicit"]
    assert explicit.partition == 2
    assert dict(explicit.headers) == {"seq": b"explicit"}
    assert [r.value for r in records if r.value == b"keyless"] == [b"keyless"]
    assert len(records) == 202  # nothing of the refused outbox
