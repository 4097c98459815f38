"""The Kafka ingest on the real broker, in-process: anomalies, resumption, no personal data.

Each test has a private three-partition topic and a private consumer group, and runs the
:class:`audit_sink.ingest.Ingestor` until the topic is drained (``stop_at_end``) against
each store (SQLite, PostgreSQL). The crash behaviour (SIGKILL, SIGTERM of the real command)
is in ``test_audit_ingest_crash.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any

import pytest
from audit_sink import bootstrap
from audit_sink.ingest import Ingestor, IngestStats, kafka_consumer
from audit_sink.leaf import AnomalyCode, EntryType, decode_leaf
from audit_sink.prepare import PreparePool
from audit_sink.samples import sample_records
from audit_sink.sealing import open_sealed, payload_aad
from audit_sink.settings import AuditSinkSettings
from sharing_guard.codec import contract_registry
from sharing_guard.contract.decision import Decision, Outcome
from test_audit_ingest_support import (
    SinkRig,
    produce,
    rig,  # noqa: F401
)
from test_audit_support import (
    backend,  # noqa: F401
    pg_names,  # noqa: F401
)

pytestmark = pytest.mark.kafka


def in_process_settings(rig: SinkRig) -> AuditSinkSettings:  # noqa: F811
    """The rig's settings with dynamic membership (a closed consumer leaves its group)."""
    settings = rig.settings()
    kafka = settings.kafka.model_copy(update={"group_instance_id": None})
    return settings.model_copy(update={"kafka": kafka})


def ingest(rig: SinkRig, *, pipelined: bool = False, **kwargs: Any) -> IngestStats:  # noqa: F811
    """Run the ingest in this process until every partition is drained."""
    settings = in_process_settings(rig)
    store, keys = bootstrap.open_store(settings), bootstrap.open_keystore(settings)
    preparer = PreparePool(bootstrap.index_key(settings)) if pipelined else None
    try:
        log = bootstrap.build_log(settings, store, keys)
        ingestor = Ingestor(
            log,
            kafka_consumer(settings),
            rig.topic,
            poll_timeout_ms=200,
            preparer=preparer,
            **kwargs,
        )
        return ingestor.run(threading.Event(), stop_at_end=True)
    finally:
        store.close()
        keys.close()
        if preparer is not None:
            preparer.close()


def sink_thread(
    settings: AuditSinkSettings, topic: str, result: list[IngestStats]
) -> threading.Thread:
    """The sink ingesting ``topic`` until it is drained, in a thread of its own (store
    included: SQLite is thread-bound), not yet started; its statistics go to ``result``.
    A daemon thread, so it never outlives a failing test."""

    def run_sink() -> None:
        store, keys = bootstrap.open_store(settings), bootstrap.open_keystore(settings)
        try:
            log = bootstrap.build_log(settings, store, keys)
            ingestor = Ingestor(log, kafka_consumer(settings), topic, poll_timeout_ms=200)
            result.append(ingestor.run(threading.Event(), stop_at_end=True))
        finally:
            store.close()
            keys.close()

    return threading.Thread(target=run_sink, daemon=True)


def encoded(count: int, seed: int) -> list[tuple[bytes | None, bytes | None]]:
    registry = contract_registry()
    return [(r.event_id.encode(), registry.encode(r)) for r in sample_records(count, seed)]


def test_undecodable_records_are_kept_as_anomalies_with_their_bytes_sealed(
    rig: SinkRig,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = contract_registry()
    valid = encoded(6, seed=1)
    not_an_audit_record = registry.encode(
        Decision(event_id="evt-x", outcome=Outcome.ALLOW, reasons=(), policy_version="2026.1")
    )
    garbage: list[bytes] = [
        b"not avro at all",
        valid[0][1][:-7] if valid[0][1] else b"",  # a truncated record
        not_an_audit_record,  # a contract record, but not an AuditRecord
        os.urandom(300),
    ]
    items: list[tuple[bytes | None, bytes | None]] = [
        *valid[:3],
        *((b"garbage-%d" % i, g) for i, g in enumerate(garbage)),
        (b"tombstone", None),
        *valid[3:],
    ]
    placed = produce(rig.env["AUDIT_SINK_KAFKA__BOOTSTRAP_SERVERS"], rig.topic, items)

    with caplog.at_level(logging.INFO):
        stats = ingest(rig)

    assert (stats.consumed, stats.appended, stats.anomalies) == (11, 11, 5)
    leaves = {
        int(i): decode_leaf(bytes(leaf)) for i, leaf in rig.sql("SELECT idx, leaf FROM leaves")
    }
    anomalies = {
        (leaf.source.partition, leaf.source.offset): (i, leaf)
        for i, leaf in leaves.items()
        if leaf.type == EntryType.ANOMALY and leaf.source is not None
    }
    assert sum(leaf.type == EntryType.RECORD for leaf in leaves.values()) == 6
    keys = rig.backend.keys()
    for position, value in zip(placed, (v for _, v in items), strict=True):
        if value is not None and value in garbage:
            index, leaf = anomalies[position]
            assert leaf.body["anomaly"] == AnomalyCode.UNDECODABLE.value
            (key_id, sealed) = rig.sql(
                "SELECT key_id, sealed FROM payloads WHERE idx = ?", [index]
            )[0]
            key = keys.keys([key_id])[key_id]
            assert open_sealed(key.key, bytes(sealed), payload_aad(index)) == value
        elif value is None:
            index, leaf = anomalies[position]
            assert leaf.body["anomaly"] == AnomalyCode.EMPTY_RECORD.value
            assert leaf.payload_digest is None

    assert rig.backend.verify().ok
    assert rig.run("verify").returncode == 0
    # The logs name anomalies by index and position, never by content.
    text = caplog.text
    assert "anomaly undecodable logged as entry" in text
    for record in sample_records(6, seed=1):
        assert record.account_id is None or record.account_id not in text
        assert record.event_id not in text


def test_resumes_from_the_positions_in_the_database_not_from_kafka(rig: SinkRig) -> None:  # noqa: F811
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    bootstrap_servers = rig.env["AUDIT_SINK_KAFKA__BOOTSTRAP_SERVERS"]
    produce(bootstrap_servers, rig.topic, encoded(300, seed=2))
    assert ingest(rig).appended == 300

    # Kafka's committed offsets are rewound to 0 (as after a lost commit, or a reset):
    # the sink still resumes where the database says, so nothing is read twice.
    group = rig.env["AUDIT_SINK_KAFKA__GROUP_ID"]
    rewind = KafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group)
    try:
        rewind.commit(
            {TopicPartition(rig.topic, p): OffsetAndMetadata(0, "", -1) for p in range(3)}
        )
    finally:
        rewind.close(autocommit=False)
    produce(bootstrap_servers, rig.topic, encoded(300, seed=3))
    stats = ingest(rig)
    assert (stats.consumed, stats.appended, stats.skipped) == (300, 300, 0)
    assert rig.consumed() == 600
    assert rig.backend.verify().ok


def test_idle_checkpoint_signs_what_batches_left_unsigned(
    rig: SinkRig,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUDIT_SINK_CHECKPOINT_EACH_BATCH", "false")
    monkeypatch.setenv("AUDIT_SINK_CHECKPOINT_EVERY", "100000")
    produce(rig.env["AUDIT_SINK_KAFKA__BOOTSTRAP_SERVERS"], rig.topic, encoded(50, seed=4))

    stats = ingest(rig, idle_checkpoint_s=0.0)

    assert stats.appended == 50
    report = rig.backend.verify()
    assert report.ok
    assert report.unsigned_tail == 0
    assert report.latest_checkpoint is not None
    assert report.latest_checkpoint.size == 50


def test_a_pipelined_ingest_stores_what_a_plain_one_does(rig: SinkRig) -> None:  # noqa: F811
    bootstrap_servers = rig.env["AUDIT_SINK_KAFKA__BOOTSTRAP_SERVERS"]
    items = encoded(1500, seed=5)
    items.insert(700, (b"garbage", b"\x00not a record"))
    placed = produce(bootstrap_servers, rig.topic, items)
    stats = ingest(rig, pipelined=True, max_poll_records=300)

    assert (stats.consumed, stats.appended, stats.anomalies) == (1501, 1501, 1)
    assert stats.batches > 1
    assert sorted((p, o) for p, o, _ in rig.sources()) == sorted(placed)
    stored = {a for (a,) in rig.sql("SELECT audit_id FROM records")}
    assert stored == {r.audit_id for r in sample_records(1500, seed=5)}
    assert rig.backend.verify().ok


def test_a_sink_started_before_its_topic_ingests_once_the_topic_exists(
    rig: SinkRig,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A platform team may deploy the sink before the topic job has run: it waits (and
    says so), then joins its group and takes every partition."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    bootstrap_servers = rig.env["AUDIT_SINK_KAFKA__BOOTSTRAP_SERVERS"]
    late = f"{rig.topic}-late"
    result: list[IngestStats] = []
    caplog.set_level(logging.WARNING, logger="sharing_guard.topic_wait")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    worker = sink_thread(in_process_settings(rig), late, result)
    try:
        worker.start()
        deadline = time.monotonic() + 60
        while f"waiting for topics to exist: {late}" not in caplog.text:
            assert time.monotonic() < deadline, "the sink never said it waits for its topic"
            assert worker.is_alive(), "the sink must wait for its topic, not give up"
            time.sleep(0.1)
        worker.join(1.0)
        assert worker.is_alive(), "the sink must wait for its topic, not give up"
        admin.create_topics([NewTopic(late, num_partitions=3, replication_factor=1)])
        produce(bootstrap_servers, late, encoded(200, seed=7))
        worker.join(120)
        assert not worker.is_alive(), "the sink did not drain the topic created after it"
        assert result[0].appended == 200
    finally:
        with contextlib.suppress(Exception):
            admin.delete_topics([late])
        admin.close()
