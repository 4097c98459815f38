"""The producer client and the guard's telemetry, on the real broker."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from guard_harness import DecisionReader, GuardProcess, fresh_topics, guard_env
from kafka import KafkaConsumer, TopicPartition
from opentelemetry.sdk.trace import TracerProvider
from sharing_guard.client import InvalidEventError, TransferClient

pytestmark = pytest.mark.kafka

VALID = {
    "source_service": "billing",
    "account_id": "acc-secret-0042",
    "data_categories": ["PERSONAL_INFORMATION"],
    "recipient": {"id": "rcp-1", "type": "AGENT", "jurisdiction": "CH"},
    "purpose": "PAYMENT_PROCESSING",
}


def end_offsets(bootstrap: str, topic: str, partitions: int = 6) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        consumer.close()


def test_client_returns_the_brokers_acknowledgement(kafka_bootstrap: str) -> None:
    topics = fresh_topics(kafka_bootstrap)
    client = TransferClient(kafka_bootstrap, topics=topics)
    try:
        ack = client.request_transfer(event_id="evt-ack", **VALID)
    finally:
        client.close()
    assert ack.topic == topics.transfers
    assert ack.offset >= 0
    assert end_offsets(kafka_bootstrap, topics.transfers)[ack.partition] == ack.offset + 1


def test_client_refuses_an_invalid_event_before_it_reaches_kafka(kafka_bootstrap: str) -> None:
    topics = fresh_topics(kafka_bootstrap)
    before = end_offsets(kafka_bootstrap, topics.transfers)
    client = TransferClient(kafka_bootstrap, topics=topics)
    try:
        bad = {**VALID, "purpose": "SELLING", "data_categories": []}
        with pytest.raises(InvalidEventError) as excinfo:
            client.request_transfer(event_id="evt-bad", **bad)
        client.flush()
    finally:
        client.close()
    message = str(excinfo.value)
    assert "purpose" in message
    assert "data_categories" in message
    assert "acc-secret-0042" not in message
    assert end_offsets(kafka_bootstrap, topics.transfers) == before


def test_a_decision_span_continues_the_producers_trace_without_personal_data(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = fresh_topics(kafka_bootstrap)
    env = guard_env(kafka_bootstrap, topics, f"trace-{topics.transfers[-8:]}", tmp_path / "d")
    spans_file = tmp_path / "spans.jsonl"
    env["SHARING_GUARD_TRACE_FILE"] = str(spans_file)
    worker = GuardProcess(env, tmp_path / "worker.log").start()
    client = TransferClient(kafka_bootstrap, topics=topics)
    reader = DecisionReader(kafka_bootstrap, topics)
    tracer = TracerProvider().get_tracer("test-producer")
    try:
        worker.wait_ready()
        with tracer.start_as_current_span("checkout") as producer_span:
            client.request_transfer(event_id="evt-traced", occurred_at=datetime.now(UTC), **VALID)
            context = producer_span.get_span_context()
        reader.wait_for({"evt-traced"})
        deadline = time.monotonic() + 20
        spans: list[dict[str, object]] = []
        while time.monotonic() < deadline and not spans:
            if spans_file.exists():
                spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
            time.sleep(0.3)
        metrics = worker.metrics()
    finally:
        client.close()
        reader.close()
        worker.stop()
    decide = [s for s in spans if s["name"] == "sharing_guard.decide"]
    assert len(decide) == 1
    span = decide[0]
    assert span["context"]["trace_id"] == f"0x{context.trace_id:032x}"  # type: ignore[index]
    assert span["parent_id"] == f"0x{context.span_id:016x}"
    assert span["attributes"]["sharing_guard.event_id"] == "evt-traced"  # type: ignore[index]
    assert "acc-secret-0042" not in json.dumps(span)
    assert "sharing_guard_decisions_total{" in metrics
    assert 'outcome="BLOCK"' in metrics
    assert "sharing_guard_decision_latency_seconds_bucket" in metrics
    assert "acc-secret-0042" not in metrics
