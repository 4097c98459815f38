"""The guard's runtime on the real broker: kept local state, bounded idempotency, liveness,
and the recovery paths of its input loop, each forced rather than left to chance.

* A worker restarted on its kept data directory answers a redelivered transfer with its
  first decision and reads no changelog record back; one whose directory was lost rebuilds
  it from the changelog and answers the same.
* An idempotency entry older than the window is tombstoned in the changelog and gone; a
  window shorter than the transfers' retention is refused at start.
* Outputs that the broker cannot acknowledge (the audit topic deleted, as an operator's
  mistake would) stall a batch: ``/livez`` fails while the worker holds lag, and a
  rebalance begun meanwhile waits for the batch, which is committed before the
  partitions move: the second worker decides nothing twice. The records the first worker
  had fetched but not processed when its partitions moved are decided by the second
  (nothing lost).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from guard_harness import (
    DecisionReader,
    GuardProcess,
    TopicReader,
    diagnosed,
    fresh_topics,
    guard_env,
)
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError
from sharing_guard.client import TransferClient
from sharing_guard.settings import Topics
from test_guard_crash import governance, publish, start, transfers

pytestmark = pytest.mark.kafka


def set_topic_configs(bootstrap: str, topic: str, **configs: str) -> None:
    """Set a topic's configs (names with ``_`` for ``.``); the others go back to defaults."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC,
                    topic,
                    configs={k.replace("_", "."): v for k, v in configs.items()},
                )
            ]
        )
    finally:
        admin.close()


@contextmanager
def missing_topic(bootstrap: str, topic: str, partitions: int) -> Iterator[None]:
    """While inside, ``topic`` does not exist (the broker creates no topic by itself):
    a producer's writes to it are retried, unacknowledged; afterwards it exists again."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic])
        wait_until(lambda: topic not in admin.list_topics(), 30, f"{topic} not deleted")
        yield
    finally:
        deadline = time.monotonic() + 30
        while True:
            try:
                admin.create_topics([NewTopic(topic, partitions, 1)])
                break
            except TopicAlreadyExistsError:  # still being deleted
                assert time.monotonic() < deadline, f"{topic} not recreated"
                time.sleep(0.5)
        admin.close()


def changelog_records(bootstrap: str, topic: str) -> list[Any]:
    """Everything the changelog holds now."""
    reader = TopicReader(bootstrap, topic)
    try:
        deadline = time.monotonic() + 10
        records: list[Any] = []
        while time.monotonic() < deadline:
            before = len(records)
            records = reader.poll()
            if records and len(records) == before:
                break
        return records
    finally:
        reader.close()


def livez(worker: GuardProcess) -> int:
    return httpx.get(f"http://127.0.0.1:{worker.port}/livez", timeout=5).status_code


def repeats(reader: DecisionReader, event_id: str) -> list[dict[str, bytes]]:
    """The headers of every decision record published for ``event_id``."""
    reader.poll()
    return [h for d, h in reader.all if d.event_id == event_id]


def wait_until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_restart_on_the_kept_store_answers_a_redelivery_without_reading_the_changelog(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = fresh_topics(kafka_bootstrap)
    app_id = f"keep-{topics.transfers[-8:]}"
    env = guard_env(kafka_bootstrap, topics, app_id, tmp_path / "d")
    client = TransferClient(kafka_bootstrap, topics=topics)
    reader = DecisionReader(kafka_bootstrap, topics)
    stream = transfers(600, seed=7, prefix="keep")
    worker = start(env, tmp_path / "w1.log")
    try:
        publish(client, governance())
        publish(client, stream)
        first = reader.wait_for({t.event_id for t in stream})
        worker.stop()
        changelog = changelog_records(kafka_bootstrap, f"{app_id}-account-state-changelog")
        assert len(changelog) >= len(stream) - 3  # one decision each (order stage aside)

        worker = start(env, tmp_path / "w2.log")  # the same data directory
        redelivered = stream[1]
        publish(client, [redelivered])
        wait_until(lambda: len(repeats(reader, redelivered.event_id)) == 2, 60, "no repeat")
        again = [d for d, _ in reader.all if d.event_id == redelivered.event_id]
        assert again[1] == first[redelivered.event_id]
        assert repeats(reader, redelivered.event_id)[1]["guard.duplicate"] == b"1"
        assert worker.counter("sharing_guard_restored_records_total") == 0
        worker.stop()

        lost = {**env, "SHARING_GUARD_DATA_DIR": str(tmp_path / "lost")}
        worker = start(lost, tmp_path / "w3.log")  # a lost data directory: rebuilt
        publish(client, [redelivered])
        wait_until(lambda: len(repeats(reader, redelivered.event_id)) == 3, 60, "no repeat")
        assert repeats(reader, redelivered.event_id)[2]["guard.duplicate"] == b"1"
        assert worker.counter("sharing_guard_restored_records_total") >= len(changelog)
    finally:
        client.close()
        reader.close()
        worker.stop()


def test_an_expired_entry_is_tombstoned_and_a_late_repeat_is_decided_afresh(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = fresh_topics(kafka_bootstrap)
    set_topic_configs(kafka_bootstrap, topics.transfers, retention_ms="2000")
    set_topic_configs(kafka_bootstrap, topics.order_requests, retention_ms="2000")
    app_id = f"expire-{topics.transfers[-8:]}"
    env = guard_env(kafka_bootstrap, topics, app_id, tmp_path / "d")
    env["SHARING_GUARD_IDEMPOTENCY_WINDOW_S"] = "3"
    client = TransferClient(kafka_bootstrap, topics=topics)
    reader = DecisionReader(kafka_bootstrap, topics)
    worker = start(env, tmp_path / "w.log")
    try:
        publish(client, governance())
        (transfer,) = [t for t in transfers(5, seed=3, prefix="old") if t.order_ref is None][:1]
        publish(client, [transfer])
        reader.wait_for([transfer.event_id])
        key = f"decision:{transfer.event_id}".encode()
        with diagnosed(worker):
            wait_until(
                lambda: worker.counter("sharing_guard_expired_entries_total") >= 1,
                30,
                "the entry did not expire",
            )
        records = [
            r
            for r in changelog_records(kafka_bootstrap, f"{app_id}-account-state-changelog")
            if r.key == key
        ]
        assert records[0].value is not None
        assert records[-1].value is None  # the tombstone
        publish(client, [transfer])  # a producer sending the same id again, too late
        wait_until(lambda: len(repeats(reader, transfer.event_id)) == 2, 60, "no decision")
        assert repeats(reader, transfer.event_id)[1]["guard.duplicate"] == b"0"
    finally:
        client.close()
        reader.close()
        worker.stop()


def test_a_window_shorter_than_the_transfers_retention_is_refused_at_start(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = fresh_topics(kafka_bootstrap)
    set_topic_configs(kafka_bootstrap, topics.transfers, retention_ms="60000")
    env = guard_env(kafka_bootstrap, topics, f"short-{topics.transfers[-8:]}", tmp_path / "d")
    env["SHARING_GUARD_IDEMPOTENCY_WINDOW_S"] = "30"
    done = subprocess.run(
        [sys.executable, "-m", "sharing_guard.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "shorter than the retention" in done.stderr
    assert "SHARING_GUARD_IDEMPOTENCY_WINDOW_S" in done.stderr


def test_a_stalled_worker_fails_livez_and_a_rebalance_waits_for_its_batch(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics: Topics = fresh_topics(kafka_bootstrap)
    env = guard_env(kafka_bootstrap, topics, f"stall-{topics.transfers[-8:]}", tmp_path / "d")
    env["SHARING_GUARD_LIVENESS_TIMEOUT_S"] = "2"
    client = TransferClient(kafka_bootstrap, topics=topics)
    reader = DecisionReader(kafka_bootstrap, topics)
    publish(client, governance())
    first = start(env, tmp_path / "w1.log")
    second: GuardProcess | None = None
    try:
        warm = transfers(50, seed=1, prefix="warm")
        publish(client, warm)
        reader.wait_for({t.event_id for t in warm})
        assert livez(first) == 200
        stream = transfers(400, seed=2, prefix="stall")
        with missing_topic(kafka_bootstrap, topics.audit, partitions=3):
            publish(client, stream)
            wait_until(lambda: livez(first) == 503, 30, "/livez kept answering 200")
            # A second worker joins: the rebalance must wait for the batch in hand.
            second = GuardProcess(
                {**env, "SHARING_GUARD_DATA_DIR": str(tmp_path / "d2")}, tmp_path / "w2.log"
            ).start()
            time.sleep(4)
            assert not second.ready_now()  # the group waits for the stalled member
        second.wait_ready()
        with diagnosed(first, second):
            decided = reader.wait_for({t.event_id for t in stream}, timeout_s=120)
        assert len(decided) == len(stream)
        reader.poll()
        marked = [d.event_id for d, h in reader.all if h.get("guard.duplicate") == b"1"]
        assert marked == []  # nothing decided twice: the batch was committed before the move
        wait_until(lambda: livez(first) == 200, 30, "/livez did not recover")
    finally:
        client.close()
        reader.close()
        first.stop()
        if second is not None:
            second.stop()
