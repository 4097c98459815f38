"""Shared rig of the ingest tests: a private topic, a producer, and a sink configured by env.

A :class:`SinkRig` is one log (SQLite files or a fresh PostgreSQL schema, from the
``backend`` fixture of ``test_audit_support``), its keys, and the ``AUDIT_SINK_*``
environment that points ``audit-sink`` at it and at a private topic of the test broker.
The environment is set in this process too (``monkeypatch``), so ``AuditSinkSettings()``
here and ``python -m audit_sink ingest`` in a subprocess read the same configuration.
This module has no tests.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from audit_sink.leaf import HEADER
from audit_sink.sealing import IndexKey
from audit_sink.settings import AuditSinkSettings
from audit_sink.signing import create_signing_key
from test_audit_support import Backend

PARTITIONS = 3


def private_topic(admin: Any, partitions: int = PARTITIONS) -> str:
    """Create a fresh topic (unique name) with ``partitions`` partitions; return its name."""
    from kafka.admin import NewTopic

    name = f"test.audit.{uuid.uuid4().hex[:12]}"
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    for _ in range(100):  # until the broker describes every partition
        described = admin.describe_topics([name])
        if described and len(described[0].get("partitions") or []) == partitions:
            break
        time.sleep(0.1)
    return name


def produce(
    bootstrap: str,
    topic: str,
    items: Iterable[tuple[bytes | None, bytes | None]],
    headers: Sequence[list[tuple[str, bytes]]] | None = None,
) -> list[tuple[int, int]]:
    """Send ``(key, value)`` pairs (keys pick the partition), each with its ``headers`` if
    given; return each (partition, offset)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024
    )
    try:
        futures = [
            producer.send(
                topic, key=key, value=value, headers=None if headers is None else headers[n]
            )
            for n, (key, value) in enumerate(items)
        ]
        producer.flush(timeout=60)
        placed = [future.get(timeout=60) for future in futures]
    finally:
        producer.close(timeout=10)
    return [(meta.partition, meta.offset) for meta in placed]


@dataclass
class SinkRig:
    """A log, its keys and the environment of ``audit-sink`` for one test."""

    backend: Backend
    topic: str
    env: dict[str, str]
    tmp_path: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def settings(self) -> AuditSinkSettings:
        """The settings the sink reads (the environment is set in this process too)."""
        return AuditSinkSettings()

    def command(self, *argv: str) -> list[str]:
        """The ``audit-sink`` command line (``python -m audit_sink``: no installed script
        needed)."""
        return [sys.executable, "-m", "audit_sink", *argv]

    def start(self, *argv: str, log_name: str = "sink.log") -> subprocess.Popen[bytes]:
        """Start ``audit-sink ARGV`` in the background, its output appended to a file, in a
        session of its own (so that :meth:`session_alive` finds the processes it starts)."""
        handle = (self.tmp_path / log_name).open("ab")
        try:
            process = subprocess.Popen(
                self.command(*argv),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=handle,
                start_new_session=True,
            )
        finally:
            handle.close()
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        """Kill every sink still running (a failed test must not leave one behind)."""
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)

    @staticmethod
    def session_alive(process: subprocess.Popen[bytes]) -> list[int]:
        """The live (not zombie) processes of the session ``process`` leads: the sink and
        whatever it started (helpers keep the session even when orphaned). Linux ``/proc``."""
        alive = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # exited meanwhile
                continue
            state, _ppid, _pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
            if int(session) == process.pid and state != "Z":
                alive.append(int(entry.name))
        return alive

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``audit-sink ARGV`` to completion."""
        return subprocess.run(
            self.command(*argv),
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run SQL on the log with the owner's rights (``?`` placeholders)."""
        return self.backend.owner(query, params)

    def assignments(self, log_name: str = "sink.log") -> int:
        """How many partition assignments the sinks have logged so far."""
        path = self.tmp_path / log_name
        return (
            path.read_text(errors="replace").count("assigned partitions [") if path.exists() else 0
        )

    def consumed(self) -> int:
        """How many Kafka positions the log has stored (0 before the log exists)."""
        try:
            return int(self.sql("SELECT count(*) FROM sources")[0][0])
        except Exception:  # the subprocess has not created the SQLite file or tables yet
            return 0

    def sources(self) -> list[tuple[int, int, int | None]]:
        """Every stored (partition, offset, entry index) of the test topic."""
        rows = self.sql("SELECT part, off, idx FROM sources WHERE topic = ?", [self.topic])
        return [(int(p), int(o), None if i is None else int(i)) for p, o, i in rows]

    def leaf_sources(self) -> list[tuple[int, int, int, int]]:
        """(index, entry type, partition, offset) of every entry, by index."""
        rows = self.sql("SELECT idx, leaf FROM leaves ORDER BY idx")
        found = []
        for idx, leaf in rows:
            _, kind, _, _, _, partition, offset, _ = HEADER.unpack_from(bytes(leaf))
            found.append((int(idx), kind, partition, offset))
        return found


def kafka_env(rig_env: dict[str, str], bootstrap: str, topic: str) -> dict[str, str]:
    """The Kafka part of the sink's environment: a private group on a private topic."""
    group = f"audit-sink-test-{uuid.uuid4().hex[:8]}"
    return {
        **rig_env,
        "AUDIT_SINK_AUDIT_TOPIC": topic,
        "AUDIT_SINK_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "AUDIT_SINK_KAFKA__GROUP_ID": group,
        "AUDIT_SINK_KAFKA__GROUP_INSTANCE_ID": f"{group}-0",
        "AUDIT_SINK_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "AUDIT_SINK_KAFKA__POLL_TIMEOUT_MS": "200",
    }


@pytest.fixture
def rig(
    request: pytest.FixtureRequest,
    backend: Backend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[SinkRig]:
    """A sink on the ``backend``'s log and a private topic, configured by environment."""
    kafka_bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    kafka_admin: Any = request.getfixturevalue("kafka_admin")
    key_file = tmp_path / "signing.key"
    signer = create_signing_key(key_file, backend.origin)
    raw_index_key = os.urandom(32)
    backend = dataclasses.replace(backend, signer=signer, index_key=IndexKey(raw_index_key))
    env = {
        "AUDIT_SINK_ORIGIN": backend.origin,
        "AUDIT_SINK_DATA_DIR": str(tmp_path / "sink"),
        "AUDIT_SINK_SIGNING_KEY_FILE": str(key_file),
        "AUDIT_SINK_INDEX_KEY": base64.b64encode(raw_index_key).decode("ascii"),
        "AUDIT_SINK_VKEY": signer.verifier().vkey,
        "AUDIT_SINK_CHECKPOINT_DIR": str(backend.archive_dir),
    }
    if backend.name == "sqlite":
        env["AUDIT_SINK_SQLITE__LOG_FILE"] = str(tmp_path / "log.db")
        env["AUDIT_SINK_SQLITE__KEYS_FILE"] = str(tmp_path / "keys.db")
    else:
        names, _ = request.getfixturevalue("pg_names")
        env.update(
            {
                "AUDIT_SINK_BACKEND": "postgres",
                "AUDIT_SINK_POSTGRES__DSN": request.getfixturevalue("pg_dsn"),
                "AUDIT_SINK_POSTGRES__SCHEMA_NAME": names.schema,
                "AUDIT_SINK_POSTGRES__ROLE": names.writer,
                "AUDIT_SINK_POSTGRES__READER_ROLE": names.reader,
                "AUDIT_SINK_POSTGRES__KEYS_SCHEMA": names.keys_schema,
                "AUDIT_SINK_POSTGRES__KEYS_ROLE": names.key_role,
            }
        )
    topic = private_topic(kafka_admin)
    env = kafka_env(env, kafka_bootstrap, topic)
    for name in [n for n in os.environ if n.startswith("AUDIT_SINK_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    sink_rig = SinkRig(backend, topic, {**os.environ}, tmp_path)
    try:
        yield sink_rig
    finally:
        sink_rig.stop_all()
    with contextlib.suppress(Exception):  # best effort: a leftover topic harms no other test
        kafka_admin.delete_topics([topic])
