"""The development infrastructure works: a real Kafka broker with the declared topics, and a
real PostgreSQL server with the test database.

These are smoke tests of ``scripts/kafka.sh`` and ``scripts/postgres.sh``, so that a failing
integration test elsewhere points at the code, not at the machine.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

TRANSFERS_REQUESTED = "sharing.transfers.requested"


@pytest.mark.kafka
def test_every_declared_topic_exists_with_its_declared_partition_count(
    kafka_admin: Any, declared_partitions: dict[str, int]
) -> None:
    described = kafka_admin.describe_topics(list(declared_partitions))
    actual = {t["name"]: len(t["partitions"]) for t in described if t["error_code"] == 0}

    assert actual == declared_partitions


@pytest.mark.kafka
def test_a_record_produced_to_transfers_requested_is_consumed_back(kafka_bootstrap: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    key = f"infrastructure-test-{uuid.uuid4()}".encode()
    value = json.dumps({"type": "InfrastructureProbe", "event_id": key.decode()}).encode()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        sent = producer.send(TRANSFERS_REQUESTED, key=key, value=value).get(timeout=15)
    finally:
        producer.close()

    partition = TopicPartition(TRANSFERS_REQUESTED, sent.partition)
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([partition])
        consumer.seek(partition, sent.offset)
        received: list[Any] = []
        deadline = time.monotonic() + 15
        while not received and time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=1000, max_records=1)
            received = batches.get(partition, [])
    finally:
        consumer.close()

    assert received, f"nothing read back from {partition} at offset {sent.offset}"
    assert (received[0].offset, received[0].key, received[0].value) == (sent.offset, key, value)


@pytest.mark.postgres
def test_a_row_round_trips_through_a_temporary_table(pg_connection: Any) -> None:
    from psycopg.types.json import Jsonb

    written = (1, "audit-leaf", {"outcome": "BLOCK"}, datetime(2025, 5, 20, 12, 0, tzinfo=UTC))
    with pg_connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE infrastructure_probe ("
            " id bigint PRIMARY KEY, kind text NOT NULL, body jsonb NOT NULL,"
            " at timestamptz NOT NULL)"
        )
        cursor.execute(
            "INSERT INTO infrastructure_probe VALUES (%s, %s, %s, %s)",
            (written[0], written[1], Jsonb(written[2]), written[3]),
        )
        cursor.execute("SELECT id, kind, body, at FROM infrastructure_probe")
        rows = cursor.fetchall()

    assert rows == [written]
