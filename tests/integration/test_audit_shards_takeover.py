"""Takeover test of a sharded trail: two sinks in one group, one killed, the other takes over.

``AUDIT_SINK_SHARDING=partition``: each partition of the audit topic has its own log (a
shard), and several ``audit-sink ingest`` processes of one consumer group share the
trail, each writing the shards of the partitions it is assigned. A stream of realistic
audit records (:func:`audit_sink.samples.sample_records`, Avro-encoded, keyed by event id)
is produced to a private four-partition topic, paced, while two sinks run. Once both own
partitions (disjoint halves of the topic, per their ``assigned partitions`` log lines)
and have stored progress in their shards, one is killed with SIGKILL; the rest of the
stream is only released then, so the kill is always mid-stream. The survivor must take
the dead sink's partitions over (its log shows an assignment of all four, and the stored
positions of the dead sink's shards move past where it left them), catch up with the
whole stream and stop on SIGTERM (exit 0). Then every record is stored exactly once across
the shards (by Kafka position and by ``audit_id``), each shard holds only its own
partition's records in offset order, ``audit-sink verify`` passes (also against the
archived checkpoints and heads notes), and nothing of the killed sink's session survives.

Group membership: the sinks run **without** ``AUDIT_SINK_KAFKA__GROUP_INSTANCE_ID`` (the
ingest rig sets one for single-sink tests) and with a 6,000 ms session timeout. With
static membership (KIP-345) the coordinator keeps a killed member's partitions assigned
to it until its session times out and, more to the point, a restarted member with the
same instance id would get them back without a rebalance: that is made for restarts, not
for takeover. A dynamic member's death is detected after the session timeout (its
heartbeats stop), and the rebalance that follows gives its partitions to the survivor; a
short timeout (heartbeats every 2 s) makes that happen within seconds.

Nothing here is timed: pacing only chooses *when* to kill, and every wait is for a
condition, bounded by a generous deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from audit_sink.leaf import HEADER, EntryType
from audit_sink.samples import sample_records
from audit_sink.settings import AuditSinkSettings
from sharing_guard.codec import contract_registry
from test_audit_ingest_support import (
    SinkRig,
    private_topic,
    produce,
    rig,  # noqa: F401
)
from test_audit_support import (
    backend,  # noqa: F401
    drop_schemas,
    install_shard_schemas,
    pg_names,  # noqa: F401
)

pytestmark = pytest.mark.kafka

PARTITIONS = 4
RECORDS = 16_000
WAVES = 40
WAVES_BEFORE_KILL = 16
DEADLINE_S = 120
MAX_POLL_RECORDS = AuditSinkSettings().kafka.max_poll_records  # the sinks' batch (default)
_ASSIGNED = re.compile(r"assigned partitions \[([0-9, ]*)\]")


def wait_for(
    condition: Callable[[], bool], what: str, state: Callable[[], str] = lambda: ""
) -> None:
    """Poll ``condition`` until it holds (``pytest.fail`` after ``DEADLINE_S``)."""
    end = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what} {state()}".rstrip())
        time.sleep(0.1)


@dataclass
class Shards:
    """The shard logs of the rig's trail, read with the owner's rights."""

    rig: SinkRig
    owner_db: Any | None  # PostgreSQL: the owner connection; SQLite: None

    def sql(self, partition: int, query: str) -> list[tuple[Any, ...]]:
        """Run ``query`` on the shard of ``partition`` (no rows before it exists)."""
        settings = self.rig.settings()
        if self.owner_db is None:
            path = settings.shard_log_file(partition)
            if not path.exists():
                return []
            db = sqlite3.connect(path, isolation_level=None, timeout=30)
            try:
                return db.execute(query).fetchall()
            except sqlite3.OperationalError:  # the sink has not created the tables yet
                return []
            finally:
                db.close()
        with self.owner_db.transaction():
            self.owner_db.execute(f'SET LOCAL search_path TO "{settings.shard_schema(partition)}"')
            return list(self.owner_db.execute(query).fetchall())

    def position(self, partition: int) -> int:
        """The next offset the shard of ``partition`` has stored (0 if none)."""
        rows = self.sql(partition, "SELECT next_offset FROM positions")
        return max((int(r[0]) for r in rows), default=0)

    def positions(self) -> dict[int, int]:
        """The stored position of every shard."""
        return {p: self.position(p) for p in range(PARTITIONS)}

    def stored(self) -> int:
        """How many records the shards have consumed in all."""
        return sum(self.positions().values())


def trace_of(key: bytes) -> str:
    """The trace id the record keyed ``key`` (its event id) carries: 32 hex digits."""
    return hashlib.sha256(key).hexdigest()[:32]


def check_traces(on: Shards, records: Sequence[Any]) -> None:
    """Each entry keeps the trace id its record carried, in its shard; a record may lack one
    only if its sink was killed between the append and the traces' own transaction (one
    batch at most)."""
    expected = {r.audit_id: trace_of(r.event_id.encode()) for r in records}
    kept: dict[str, str] = {}
    for partition in range(PARTITIONS):
        rows = on.sql(
            partition,
            "SELECT r.audit_id, t.trace_id FROM records r JOIN traces t ON t.idx = r.idx",
        )
        kept.update((str(a), str(t)) for a, t in rows)
    assert all(expected[audit_id] == trace for audit_id, trace in kept.items())
    assert len(expected) - len(kept) <= MAX_POLL_RECORDS, len(expected) - len(kept)


class PacedProducer(threading.Thread):
    """Produces the stream in paced waves; after ``WAVES_BEFORE_KILL`` waves it waits for
    :meth:`release` (the kill), so that the kill always hits a stream still flowing."""

    def __init__(self, bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
        super().__init__(name="paced-producer", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.values = values
        # Each record carries the trace context the guard would give it (trace_of its key).
        self.headers = [
            [("traceparent", f"00-{trace_of(key)}-00f067aa0ba902b7-01".encode())]
            for key, _ in values
        ]
        self.placed: list[tuple[int, int]] = []
        self.error: BaseException | None = None
        self.released = threading.Event()

    def release(self) -> None:
        """Let the rest of the stream out."""
        self.released.set()

    def run(self) -> None:
        try:
            size = -(-len(self.values) // WAVES)
            for wave, start in enumerate(range(0, len(self.values), size)):
                if wave == WAVES_BEFORE_KILL:
                    self.released.wait(timeout=DEADLINE_S * 3)
                self.placed += produce(
                    self.bootstrap,
                    self.topic,
                    self.values[start : start + size],
                    self.headers[start : start + size],
                )
                time.sleep(0.25)
        except BaseException as exc:  # re-raised by the test
            self.error = exc


def assignments(log: Path) -> list[set[int]]:
    """Every partition assignment a sink has logged, in order."""
    if not log.exists():
        return []
    text = log.read_text(errors="replace")
    return [{int(p) for p in m.group(1).split(",") if p.strip()} for m in _ASSIGNED.finditer(text)]


def current(log: Path) -> set[int]:
    """The partitions a sink holds by its latest logged assignment (none before the first)."""
    found = assignments(log)
    return found[-1] if found else set()


@pytest.fixture
def shards(
    rig: SinkRig,  # noqa: F811
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Shards]:
    """The rig turned into a sharded trail on a private four-partition topic, its sinks
    dynamic group members (module doc); PostgreSQL: the shard and heads schemas installed
    by the owner, and dropped afterwards."""
    admin = request.getfixturevalue("kafka_admin")
    topic = private_topic(admin, PARTITIONS)
    rig.topic = topic
    changes = {
        "AUDIT_SINK_AUDIT_TOPIC": topic,
        "AUDIT_SINK_SHARDING": "partition",
        "AUDIT_SINK_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "AUDIT_SINK_METRICS_PORT": "0",
    }
    rig.env.update(changes)
    rig.env.pop("AUDIT_SINK_KAFKA__GROUP_INSTANCE_ID", None)
    for name, value in changes.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AUDIT_SINK_KAFKA__GROUP_INSTANCE_ID", raising=False)
    owner_db = None
    schemas: list[str] = []
    if rig.backend.name == "postgres":
        names, owner_db = request.getfixturevalue("pg_names")
        schemas = install_shard_schemas(owner_db, names, PARTITIONS)
    try:
        yield Shards(rig, owner_db)
    finally:
        rig.stop_all()  # before the schemas go
        if owner_db is not None:
            drop_schemas(owner_db, schemas)
        with contextlib.suppress(Exception):  # best effort: a leftover topic harms no test
            admin.delete_topics([topic])


def check_exactly_once(
    on: Shards, placed: Sequence[tuple[int, int]], records: Sequence[Any]
) -> None:
    """Every produced record stored once, in its partition's shard, in offset order, with
    the trace id it carried (:func:`check_traces`)."""
    audit_ids = [r.audit_id for r in records]
    check_traces(on, records)
    produced = dict(zip(placed, audit_ids, strict=True))
    positions: Counter[tuple[int, int]] = Counter()
    stored_ids: list[str] = []
    for partition in range(PARTITIONS):
        sources = [
            (int(p), int(o), None if i is None else int(i))
            for t, p, o, i in on.sql(partition, "SELECT topic, part, off, idx FROM sources")
            if t == on.rig.topic
        ]
        assert {p for p, _, _ in sources} == {partition}, f"shard {partition} holds others"
        positions.update((p, o) for p, o, _ in sources)
        by_index = {i: (p, o) for p, o, i in sources}
        records = [
            (str(a), int(i)) for a, i in on.sql(partition, "SELECT audit_id, idx FROM records")
        ]
        # ... each record at the position it was produced at ...
        assert all(produced[by_index[idx]] == audit_id for audit_id, idx in records)
        stored_ids += [a for a, _ in records]
        # ... every entry a record of this partition, chained in offset order.
        entries = []
        for idx, leaf in on.sql(partition, "SELECT idx, leaf FROM leaves ORDER BY idx"):
            _, kind, _, _, _, part, offset, _ = HEADER.unpack_from(bytes(leaf))
            entries.append((int(idx), kind, part, offset))
        assert [e[0] for e in entries] == list(range(len(entries)))
        assert {e[1] for e in entries} <= {int(EntryType.RECORD)}
        assert {e[2] for e in entries} <= {partition}
        offsets = [e[3] for e in entries]
        assert offsets == sorted(o for p, o in placed if p == partition)
    # Exactly once, by Kafka position and by audit_id, across the shards.
    assert sum(positions.values()) == RECORDS
    assert set(positions) == set(placed)
    assert max(positions.values()) == 1
    assert sorted(stored_ids) == sorted(audit_ids)


def test_survivor_takes_over_the_killed_sinks_shards(shards: Shards) -> None:
    on = shards.rig
    registry = contract_registry()
    records = list(sample_records(RECORDS, seed=int.from_bytes(os.urandom(2), "big") % 1000))
    values = [(r.event_id.encode(), registry.encode(r)) for r in records]
    logs = [on.tmp_path / "sink-a.log", on.tmp_path / "sink-b.log"]
    sinks = [on.start("ingest", log_name=log.name) for log in logs]

    def state() -> str:
        held = [sorted(current(log)) for log in logs]
        alive = [sink.poll() is None for sink in sinks]
        return f"(assigned {held}, alive {alive}, stored {shards.positions()})"

    def split() -> bool:  # both hold a disjoint, non-empty part; together all of it
        a, b = current(logs[0]), current(logs[1])
        return bool(a) and bool(b) and not a & b and a | b == set(range(PARTITIONS))

    wait_for(split, "both sinks to hold partitions", state)
    producer = PacedProducer(on.env["AUDIT_SINK_KAFKA__BOOTSTRAP_SERVERS"], on.topic, values)
    producer.start()
    try:
        # Progress under this very assignment: both hold their part and have stored in it.
        settled = [len(assignments(log)) for log in logs]
        wait_for(
            lambda: all(all(shards.position(p) > 0 for p in current(log)) for log in logs),
            "both sinks to store progress in their shards",
            state,
        )
        assert [len(assignments(log)) for log in logs] == settled, "a rebalance meanwhile"
        assert all(sink.poll() is None for sink in sinks), "a sink exited; see its log"

        victim, survivor = sinks
        theirs = current(logs[0])
        seen = len(assignments(logs[1]))
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        left_at = {p: shards.position(p) for p in theirs}
        assert len(producer.placed) < RECORDS  # mid-stream: the rest waits for the kill
        producer.release()
        # Nothing of the killed sink lingers (its preparing helper holds a batch in hand).
        wait_for(
            lambda: not on.session_alive(victim),
            "the killed sink's processes to exit",
            lambda: f"(still alive: {on.session_alive(victim)})",
        )
        # The survivor is assigned every partition, and the dead sink's shards move on.
        wait_for(
            lambda: any(a >= theirs for a in assignments(logs[1])[seen:]),
            "the survivor to be assigned the killed sink's partitions",
            state,
        )
        wait_for(
            lambda: all(shards.position(p) > left_at[p] for p in theirs),
            "the killed sink's shards to advance under the survivor",
            lambda: f"(left at {left_at}) {state()}",
        )
        producer.join(timeout=DEADLINE_S)
        assert producer.error is None, producer.error
        assert len(producer.placed) == RECORDS
        wait_for(lambda: shards.stored() >= RECORDS, "the survivor to catch up", state)
    finally:
        producer.release()
    assert survivor.poll() is None, "the survivor exited; see sink-b.log"
    assert current(logs[1]) == set(range(PARTITIONS))
    survivor.send_signal(signal.SIGTERM)
    assert survivor.wait(timeout=60) == 0, "SIGTERM must stop the survivor gracefully"

    check_exactly_once(shards, producer.placed, records)
    verified = on.run("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"OK: {RECORDS} entries intact in {PARTITIONS} shard(s)")
    archive = on.env["AUDIT_SINK_CHECKPOINT_DIR"]
    assert any(Path(archive, "heads").glob("*.note")), "no heads note archived"
    trusted = on.run("verify", "--trusted-checkpoint", archive)
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert not on.session_alive(victim)
