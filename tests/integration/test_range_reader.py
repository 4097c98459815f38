"""Reading back records Faust did not deliver, on the real broker: exactly the offsets
asked for, in order, with their keys and headers; one range after another on the same
client; a range that never fills times out; and, between reads, the client fetches
nothing in the background (its partition is paused)."""

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from kafka.admin import NewTopic
from sharing_guard.stream.catchup import Partition
from sharing_guard.stream.end_offsets import RangeReader


async def _scenario(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(
                topic, f"value-{i}".encode(), key=f"key-{i}".encode(), headers=[("n", b"%d" % i)]
            )
    finally:
        await producer.stop()
    reader = RangeReader(bootstrap)
    tp = Partition(topic, 0)
    try:
        middle = await reader.read(tp, 3, 8, timeout_s=30)
        assert [e.message.offset for e in middle] == [3, 4, 5, 6, 7]
        assert [e.message.value for e in middle] == [f"value-{i}".encode() for i in range(3, 8)]
        assert middle[0].message.key == b"key-3"
        assert middle[0].message.headers == [("n", b"3")]
        client = reader._client
        assert client is not None

        def idle() -> bool:  # nothing fetched until the next read
            return bool(client.assignment()) and client.assignment() <= client.paused()

        assert idle()
        start = await reader.read(tp, 0, 3, timeout_s=30)  # an earlier range, same client
        assert [e.message.offset for e in start] == [0, 1, 2]
        assert idle()
        with pytest.raises(TimeoutError):  # offsets 10 and 11 do not exist yet
            await reader.read(tp, 8, 12, timeout_s=1.5)
        assert idle()  # after a failure too
    finally:
        await reader.close()


def test_range_reader_reads_exactly_the_range_and_then_stops_fetching(
    kafka_bootstrap: str, kafka_admin: Any
) -> None:
    topic = f"test.range-reader.{uuid.uuid4().hex[:8]}"
    kafka_admin.create_topics([NewTopic(topic, 1, 1)])
    try:
        asyncio.run(_scenario(kafka_bootstrap, topic))
    finally:
        kafka_admin.delete_topics([topic])
