"""Migrating a running sink from one log to shards, on the real broker and both stores.

``audit-sink ingest --stop-at-end`` (the real command, in a subprocess) first runs with
``AUDIT_SINK_SHARDING=single`` over the first part of a stream on a private three-partition
topic; then the rest is produced and it runs again with ``sharding=partition``. The single
log becomes the frozen legacy member of the trail: each record is stored exactly once
across it and the shards, the legacy log still verifies alone under the base origin and
key, and the first heads note lists it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from audit_sink import bootstrap
from audit_sink.heads import MemberHead, open_heads, shard_origin
from audit_sink.samples import sample_records
from audit_sink.settings import AuditSinkSettings
from audit_sink.trail import latest_head
from audit_sink.trail_verify import verify_trail
from audit_sink.verification import verify_log
from sharing_guard.codec import contract_registry
from test_audit_ingest_support import PARTITIONS, kafka_env, private_topic, produce
from test_audit_shards_tamper import configure
from test_audit_support import pg_names  # noqa: F401

pytestmark = pytest.mark.kafka

RECORDS = 600
BEFORE = 250  # ingested into the single log


class Migration:
    """The environment of the sink, the producer of the stream and SQL on every member."""

    def __init__(self, env: dict[str, str], topic: str, bootstrap: str, owner_db: Any) -> None:
        self.env, self.topic, self.bootstrap, self.owner_db = env, topic, bootstrap, owner_db

    def settings(self) -> AuditSinkSettings:
        return AuditSinkSettings()

    def ingest(self, sharding: str) -> None:
        env = {**self.env, "AUDIT_SINK_SHARDING": sharding}
        done = subprocess.run(
            [sys.executable, "-m", "audit_sink", "ingest", "--stop-at-end"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]

    def sql(self, partition: int | None, query: str) -> list[tuple[Any, ...]]:
        """SQL with the owner's rights on the legacy log (``None``) or a shard."""
        settings = self.settings()
        if self.owner_db is None:
            path = settings.log_file() if partition is None else settings.shard_log_file(partition)
            db = sqlite3.connect(path, isolation_level=None)
            try:
                return db.execute(query).fetchall()
            finally:
                db.close()
        schema = (
            settings.postgres.schema_name if partition is None else settings.shard_schema(partition)
        )
        with self.owner_db.transaction():
            self.owner_db.execute(f'SET LOCAL search_path TO "{schema}"')
            return self.owner_db.execute(query).fetchall()

    def stored(self, partition: int | None) -> tuple[list[str], list[tuple[int, int]], int]:
        """The audit ids, the (partition, offset) sources and the size of one member."""
        ids = [str(r[0]) for r in self.sql(partition, "SELECT audit_id FROM records")]
        sources = self.sql(partition, f"SELECT part, off FROM sources WHERE topic = '{self.topic}'")
        size = int(self.sql(partition, "SELECT count(*) FROM leaves")[0][0])
        return ids, [(int(p), int(o)) for p, o in sources], size


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def migration(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kafka_bootstrap: str,
    kafka_admin: Any,
) -> Iterator[Migration]:
    """A fresh trail (single for now) and a private topic, configured by environment."""
    _, _, owner_db = configure(request, tmp_path, monkeypatch, request.param, "single")
    topic = private_topic(kafka_admin)
    for name, value in kafka_env({}, kafka_bootstrap, topic).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUDIT_SINK_KAFKA__MAX_POLL_RECORDS", "100")  # several batches
    try:
        yield Migration({**os.environ}, topic, kafka_bootstrap, owner_db)
    finally:
        with contextlib.suppress(Exception):
            kafka_admin.delete_topics([topic])


def keyed(records: Sequence[Any]) -> list[tuple[bytes, bytes]]:
    registry = contract_registry()
    return [(r.event_id.encode(), registry.encode(r)) for r in records]


def assert_stored_once(
    migration: Migration,
    legacy: tuple[list[str], list[tuple[int, int]], int],
    audit_ids: Sequence[str],
    placed: Sequence[tuple[int, int]],
) -> None:
    """Each record in exactly one member (by audit id and by position), the legacy log as
    it was before the switch, each shard holding its own partition only."""
    assert migration.stored(None) == legacy, "the legacy log was written after the switch"
    ids, sources = Counter(legacy[0]), Counter(legacy[1])
    for partition in range(PARTITIONS):
        shard_ids, shard_sources, shard_size = migration.stored(partition)
        assert shard_size == len(shard_ids)
        assert {p for p, _ in shard_sources} == {partition}
        ids.update(shard_ids)
        sources.update(shard_sources)
    assert ids == Counter(audit_ids)
    assert sources == Counter(placed)


def legacy_alone(settings: AuditSinkSettings) -> MemberHead:
    """The legacy log verified on its own (the base key and origin, as before the switch);
    its latest head."""
    pinned, origin = bootstrap.pinned_verifier(settings), settings.require_origin()
    store = bootstrap.open_store(settings.model_copy(update={"sharding": "single"}), write=False)
    try:
        with store.reader() as reader:
            alone = verify_log(reader, trusted_keys=[pinned], origin=origin)
        head = latest_head(store, pinned)
    finally:
        store.close()
    assert alone.ok, alone.to_dict()
    assert (alone.size, alone.unsigned_tail) == (BEFORE, 0)
    assert head is not None
    assert (head.origin, head.size) == (origin, BEFORE)
    return head


def test_a_single_log_migrates_to_shards_losing_and_repeating_nothing(
    migration: Migration,
) -> None:
    records = list(sample_records(RECORDS, seed=11))
    audit_ids = [r.audit_id for r in records]
    assert len(set(audit_ids)) == RECORDS
    placed = produce(migration.bootstrap, migration.topic, keyed(records[:BEFORE]))
    migration.ingest("single")
    legacy = migration.stored(None)
    assert sorted(legacy[0]) == sorted(audit_ids[:BEFORE])
    assert legacy[2] == BEFORE

    placed += produce(migration.bootstrap, migration.topic, keyed(records[BEFORE:]))
    assert {p for p, _ in placed[BEFORE:]} == set(range(PARTITIONS))  # every shard gets some
    migration.ingest("partition")

    settings = migration.settings().model_copy(update={"sharding": "partition"})
    origin = settings.require_origin()
    pinned = bootstrap.pinned_verifier(settings)
    assert_stored_once(migration, legacy, audit_ids, placed)

    # The trail verifies, archive included; the legacy log is its first member.
    archived = [p.read_text("utf-8") for p in sorted(settings.archive_dir().rglob("*.note"))]
    for trusted in ((), archived):
        report = verify_trail(settings, pinned, trusted, workers=1)
        assert report.ok, report.to_dict()
        assert [m.member.label for m in report.members] == [
            "log",
            *(f"shard {p}" for p in range(PARTITIONS)),
        ]
        assert (report.size, report.members[0].report.size) == (RECORDS, BEFORE)

    # The first heads note lists the legacy log at its final head (and the first shard
    # signed); the latest lists it and every shard, all signed.
    head = legacy_alone(settings)
    store = bootstrap.open_heads_store(settings, write=False)
    try:
        notes = [note for _, note in store.notes()]
    finally:
        store.close()
    first = open_heads(notes[0], pinned, origin)
    assert first.heads[0] == head
    assert len(first.heads) == 2
    assert first.heads[1].origin in {shard_origin(origin, p) for p in range(PARTITIONS)}
    latest = open_heads(notes[-1], pinned, origin)
    assert latest.heads[0] == head
    assert [h.origin for h in latest.heads[1:]] == [
        shard_origin(origin, p) for p in range(PARTITIONS)
    ]
    assert sum(h.size for h in latest.heads) == RECORDS
