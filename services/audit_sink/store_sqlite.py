"""The log store on SQLite (the embedded default): one file, WAL, ``synchronous=FULL``.

The writer lock is SQLite's own (``BEGIN IMMEDIATE``). Triggers make every table but
``positions`` append-only: ``BEFORE UPDATE`` and ``BEFORE DELETE`` abort, and ``BEFORE
INSERT`` triggers accept a leaf only at the next index and refuse a row whose key exists,
which closes the ``INSERT OR REPLACE`` loophole (a REPLACE deletes the conflicting row
without firing delete triggers). Payload rows may be deleted only for erased entries.
Anyone who can write the file can drop the triggers: the verifier is the real control.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from audit_sink._sql import (
    RECORD_COLUMNS,
    appended_rows,
    insert_sql,
    position_rows,
    record_filter,
    record_row,
    save_positions_sql,
)
from audit_sink.store import (
    AppendRows,
    CheckpointRow,
    LeafRow,
    PayloadRow,
    Position,
    RecordFilter,
    RecordRow,
    StoreError,
    TopicPartition,
)

__all__ = ["SCHEMA_SQL", "SqliteLogStore", "SqliteSnapshotRef"]

FORMAT: Final = "audit-sink/sqlite/1"

_APPEND_ONLY = (
    "leaves",
    "records",
    "sources",
    "erased",
    "checkpoints",
    "meta",
    "payloads",
    "traces",
)

SCHEMA_SQL: Final = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leaves (
    idx INTEGER PRIMARY KEY CHECK (idx >= 0),
    leaf BLOB NOT NULL,
    leaf_hash BLOB NOT NULL CHECK (length(leaf_hash) = 32)
);
CREATE TABLE IF NOT EXISTS payloads (
    idx INTEGER PRIMARY KEY REFERENCES leaves(idx),
    key_id TEXT NOT NULL,
    account_tag BLOB,
    sealed BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS payloads_by_tag ON payloads(account_tag);
CREATE TABLE IF NOT EXISTS records (
    idx INTEGER PRIMARY KEY REFERENCES leaves(idx),
    audit_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    event_id TEXT NOT NULL,
    recipient_id TEXT,
    order_ref TEXT,
    outcome TEXT,
    occurred_at INTEGER NOT NULL,
    reason_codes TEXT NOT NULL,
    content_mac BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_event ON records(event_id);
CREATE INDEX IF NOT EXISTS records_by_recipient ON records(recipient_id);
CREATE INDEX IF NOT EXISTS records_by_order ON records(order_ref);
CREATE INDEX IF NOT EXISTS records_by_time ON records(occurred_at);
CREATE TABLE IF NOT EXISTS sources (
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    off INTEGER NOT NULL,
    content_mac BLOB NOT NULL,
    idx INTEGER REFERENCES leaves(idx),
    PRIMARY KEY (topic, part, off, content_mac)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS erased (
    idx INTEGER PRIMARY KEY REFERENCES leaves(idx),
    erasure_idx INTEGER NOT NULL REFERENCES leaves(idx)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL,
    peaks BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS traces (
    idx INTEGER PRIMARY KEY REFERENCES leaves(idx),
    trace_id TEXT NOT NULL CHECK (length(trace_id) = 32)
);
CREATE TRIGGER IF NOT EXISTS traces_insert_new BEFORE INSERT ON traces
WHEN EXISTS (SELECT 1 FROM traces WHERE idx = NEW.idx)
BEGIN SELECT RAISE(ABORT, 'audit log: traces are append-only'); END;
CREATE TABLE IF NOT EXISTS positions (
    topic TEXT NOT NULL,
    part INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, part)
);
CREATE TRIGGER IF NOT EXISTS leaves_next_index BEFORE INSERT ON leaves
WHEN NEW.idx IS NOT (SELECT COALESCE(MAX(idx), -1) + 1 FROM leaves)
BEGIN SELECT RAISE(ABORT, 'audit log: a leaf is appended at the next index only'); END;
CREATE TRIGGER IF NOT EXISTS records_insert_new BEFORE INSERT ON records
WHEN EXISTS (SELECT 1 FROM records WHERE idx = NEW.idx)
  OR EXISTS (SELECT 1 FROM records WHERE audit_id = NEW.audit_id)
BEGIN SELECT RAISE(ABORT, 'audit log: records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS sources_insert_new BEFORE INSERT ON sources
WHEN EXISTS (SELECT 1 FROM sources WHERE topic = NEW.topic AND part = NEW.part
             AND off = NEW.off AND content_mac = NEW.content_mac)
BEGIN SELECT RAISE(ABORT, 'audit log: sources are append-only'); END;
CREATE TRIGGER IF NOT EXISTS erased_insert_new BEFORE INSERT ON erased
WHEN EXISTS (SELECT 1 FROM erased WHERE idx = NEW.idx)
BEGIN SELECT RAISE(ABORT, 'audit log: erasures are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_insert_new BEFORE INSERT ON checkpoints
WHEN NEW.size <= (SELECT COALESCE(MAX(size), -1) FROM checkpoints)
BEGIN SELECT RAISE(ABORT, 'audit log: checkpoints only grow'); END;
CREATE TRIGGER IF NOT EXISTS meta_insert_new BEFORE INSERT ON meta
WHEN EXISTS (SELECT 1 FROM meta WHERE key = NEW.key)
BEGIN SELECT RAISE(ABORT, 'audit log: meta is append-only'); END;
CREATE TRIGGER IF NOT EXISTS payloads_insert_new BEFORE INSERT ON payloads
WHEN EXISTS (SELECT 1 FROM payloads WHERE idx = NEW.idx)
  OR EXISTS (SELECT 1 FROM erased WHERE idx = NEW.idx)
BEGIN SELECT RAISE(ABORT, 'audit log: payloads are written once'); END;
CREATE TRIGGER IF NOT EXISTS payloads_delete_erased_only BEFORE DELETE ON payloads
WHEN NOT EXISTS (SELECT 1 FROM erased WHERE idx = OLD.idx)
BEGIN SELECT RAISE(ABORT, 'audit log: only erased payloads may be deleted'); END;
"""
    + "".join(
        f"""
CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, 'audit log: {table} is append-only'); END;"""
        for table in _APPEND_ONLY
    )
    + "".join(
        f"""
CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, 'audit log: {table} is append-only'); END;"""
        for table in _APPEND_ONLY
        if table != "payloads"
    )
)


def _marks(count: int) -> str:
    return ",".join("?" * count)


def _chunks(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class _SegmentReads:
    """Index-range reads (the snapshot reader and verification helpers share them)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def leaf_rows_between(self, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
        return self._db.execute(
            "SELECT idx, leaf, leaf_hash FROM leaves WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        ).fetchall()

    def payload_rows_between(self, start: int, end: int) -> list[tuple[int, bytes]]:
        return self._db.execute(
            "SELECT idx, sealed FROM payloads WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        ).fetchall()


@dataclass(frozen=True)
class SqliteSnapshotRef:
    """The log file, for verification helpers (each opens it read-only)."""

    path: Path

    @contextmanager
    def open(self) -> Iterator[_SegmentReads]:
        """A read transaction on the file as committed now."""
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            db.execute("BEGIN")
            yield _SegmentReads(db)
            db.execute("ROLLBACK")
        finally:
            db.close()


class _Reads(_SegmentReads):
    """Read queries shared by the snapshot reader and the write transaction."""

    def __init__(self, db: sqlite3.Connection, path: Path | None = None) -> None:
        super().__init__(db)
        self._path = path

    def snapshot_ref(self) -> SqliteSnapshotRef | None:
        return None if self._path is None else SqliteSnapshotRef(self._path)

    def payloads_outside(self, start: int, end: int) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM payloads WHERE idx < ? OR idx >= ?", (start, end)
        ).fetchone()
        return int(row[0])

    def size(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(idx), -1) + 1 FROM leaves").fetchone()
        return int(row[0])

    def checkpoints(self) -> list[CheckpointRow]:
        rows = self._db.execute("SELECT size, note, peaks FROM checkpoints ORDER BY size")
        return [CheckpointRow(size, note, bytes(peaks)) for size, note, peaks in rows]

    def latest_checkpoint(self) -> CheckpointRow | None:
        row = self._db.execute(
            "SELECT size, note, peaks FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        return None if row is None else CheckpointRow(row[0], row[1], bytes(row[2]))

    def leaf_chunks(self, chunk_size: int) -> Iterator[list[tuple[int, bytes, bytes]]]:
        cursor = self._db.execute("SELECT idx, leaf, leaf_hash FROM leaves ORDER BY idx")
        while rows := cursor.fetchmany(chunk_size):
            yield rows

    def payload_chunks(self, chunk_size: int) -> Iterator[list[tuple[int, bytes]]]:
        cursor = self._db.execute("SELECT idx, sealed FROM payloads ORDER BY idx")
        while rows := cursor.fetchmany(chunk_size):
            yield rows

    def leaf_rows(self, start: int, end: int) -> list[LeafRow]:
        rows = self._db.execute(
            "SELECT idx, leaf, leaf_hash FROM leaves WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        )
        return [LeafRow(i, bytes(leaf), bytes(h)) for i, leaf, h in rows]

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        rows = self._db.execute(
            "SELECT leaf_hash FROM leaves WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        )
        return [bytes(h) for (h,) in rows]

    def leaves(self, indices: Collection[int]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for part in _chunks(sorted(set(indices))):
            rows = self._db.execute(
                f"SELECT idx, leaf FROM leaves WHERE idx IN ({_marks(len(part))})", part
            )
            found.update((i, bytes(leaf)) for i, leaf in rows)
        return found

    def find_record(self, audit_id: str) -> int | None:
        row = self._db.execute("SELECT idx FROM records WHERE audit_id = ?", (audit_id,)).fetchone()
        return None if row is None else int(row[0])

    def query_records(self, criteria: RecordFilter) -> list[RecordRow]:
        where, params = record_filter(criteria, "?", "instr({column}, {mark}) > 0")
        sql = f"SELECT {RECORD_COLUMNS} FROM records"
        if criteria.indices is None:
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY occurred_at, idx" if criteria.by_time else " ORDER BY idx"
            if criteria.limit is not None:
                sql += " LIMIT ?"
                params.append(criteria.limit)
            return [record_row(row) for row in self._db.execute(sql, params)]
        found: list[RecordRow] = []
        for part in _chunks(sorted(set(criteria.indices))):
            clauses = [*where, f"idx IN ({_marks(len(part))})"]
            rows = self._db.execute(
                sql + " WHERE " + " AND ".join(clauses) + " ORDER BY idx", [*params, *part]
            )
            found.extend(record_row(row) for row in rows)
        if criteria.by_time:
            found.sort(key=lambda row: (row.occurred_at, row.index))
        return found if criteria.limit is None else found[: criteria.limit]

    def payloads(self, indices: Collection[int]) -> dict[int, PayloadRow]:
        found: dict[int, PayloadRow] = {}
        for part in _chunks(sorted(set(indices))):
            rows = self._db.execute(
                "SELECT idx, key_id, account_tag, sealed FROM payloads "
                f"WHERE idx IN ({_marks(len(part))})",
                part,
            )
            for i, key_id, tag, sealed in rows:
                found[i] = PayloadRow(i, key_id, None if tag is None else bytes(tag), bytes(sealed))
        return found

    def payload_indices_for_tag(self, account_tag: bytes) -> list[int]:
        rows = self._db.execute(
            "SELECT idx FROM payloads WHERE account_tag = ? ORDER BY idx", (account_tag,)
        )
        return [int(i) for (i,) in rows]

    def trace_ids(self, indices: Collection[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        for part in _chunks(sorted(set(indices))):
            rows = self._db.execute(
                f"SELECT idx, trace_id FROM traces WHERE idx IN ({_marks(len(part))})", part
            )
            found.update((int(i), str(t)) for i, t in rows)
        return found

    def erased(self, indices: Collection[int] | None = None) -> set[int]:
        if indices is None:
            return {int(i) for (i,) in self._db.execute("SELECT idx FROM erased")}
        found: set[int] = set()
        for part in _chunks(sorted(set(indices))):
            rows = self._db.execute(
                f"SELECT idx FROM erased WHERE idx IN ({_marks(len(part))})", part
            )
            found.update(int(i) for (i,) in rows)
        return found

    def committed_positions(self) -> dict[TopicPartition, int]:
        rows = self._db.execute("SELECT topic, part, next_offset FROM positions")
        return {(topic, part): offset for topic, part, offset in rows}


class _Transaction(_Reads):
    """The write operations, inside ``BEGIN IMMEDIATE``."""

    def head(self) -> tuple[int, bytes | None]:
        row = self._db.execute(
            "SELECT idx, leaf_hash FROM leaves ORDER BY idx DESC LIMIT 1"
        ).fetchone()
        return (0, None) if row is None else (int(row[0]) + 1, bytes(row[1]))

    def source_macs(
        self, positions: Collection[Position]
    ) -> dict[Position, dict[bytes, int | None]]:
        wanted = set(positions)
        ranges: dict[TopicPartition, tuple[int, int]] = {}
        for topic, part, off in wanted:
            low, high = ranges.get((topic, part), (off, off))
            ranges[(topic, part)] = (min(low, off), max(high, off))
        found: dict[Position, dict[bytes, int | None]] = {}
        for (topic, part), (low, high) in ranges.items():
            rows = self._db.execute(
                "SELECT off, content_mac, idx FROM sources "
                "WHERE topic = ? AND part = ? AND off BETWEEN ? AND ?",
                (topic, part, low, high),
            )
            for off, mac, idx in rows:
                position = (topic, part, int(off))
                if position in wanted:
                    found.setdefault(position, {})[bytes(mac)] = idx
        return found

    def max_offsets(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        found: dict[TopicPartition, int] = {}
        for topic, part in set(partitions):
            row = self._db.execute(
                "SELECT MAX(off) FROM sources WHERE topic = ? AND part = ?", (topic, part)
            ).fetchone()
            if row[0] is not None:
                found[(topic, part)] = int(row[0])
        return found

    def records_by_audit_id(self, audit_ids: Collection[str]) -> dict[str, tuple[int, bytes]]:
        found: dict[str, tuple[int, bytes]] = {}
        for part in _chunks(sorted(set(audit_ids))):
            rows = self._db.execute(
                "SELECT audit_id, idx, content_mac FROM records "
                f"WHERE audit_id IN ({_marks(len(part))})",
                part,
            )
            for audit_id, idx, mac in rows:
                found[audit_id] = (int(idx), bytes(mac))
        return found

    def append(self, rows: AppendRows) -> None:
        for table, params in appended_rows(rows):
            self._db.executemany(insert_sql(table, "?"), params)

    def save_positions(self, positions: Mapping[TopicPartition, int]) -> None:
        self._db.executemany(save_positions_sql("?"), position_rows(positions))

    def add_checkpoint(self, row: CheckpointRow) -> None:
        self._db.execute(
            "INSERT INTO checkpoints(size, note, peaks) VALUES (?, ?, ?)",
            (row.size, row.note, row.peaks),
        )


class SqliteLogStore:
    """The log in one SQLite file, created on first open with mode 0600."""

    def __init__(
        self, path: Path, origin: str, *, read_only: bool = False, cache_mb: int = 64
    ) -> None:
        """Open or create the log at ``path`` for ``origin`` (``StoreError`` if another's).

        ``read_only`` opens an existing file without writing anything (no schema update),
        e.g. a copy on read-only media, for verification and queries. ``cache_mb`` is the
        page cache of the connection: the indexes of a large log stay in it, which makes
        appends about a third cheaper than with SQLite's 2 MB default.
        """
        self.path = path
        self.origin = origin
        self._cache_pragma = f"PRAGMA cache_size = -{max(1, int(cache_mb)) * 1024}"
        if read_only:
            if not path.is_file():
                raise StoreError(f"no audit log at {path}")
            uri = f"{path.resolve().as_uri()}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        else:
            meta = self._create(path, origin)
        if meta and (meta.get("origin") != origin or meta.get("format") != FORMAT):
            self._db.close()
            raise StoreError(f"{path} holds another log (origin or format differ)")

    def _create(self, path: Path, origin: str) -> dict[str, str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        # Used from one thread at a time; verification reads from a helper thread while the
        # caller waits (see audit_sink.verification), hence no same-thread check.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute(self._cache_pragma)
        self._db.executescript(SCHEMA_SQL)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                self._db.executemany(
                    "INSERT INTO meta(key, value) VALUES (?, ?)",
                    [("origin", origin), ("format", FORMAT)],
                )
        except BaseException:
            self._db.execute("ROLLBACK")
            self._db.close()
            raise
        self._db.execute("COMMIT")
        return meta

    @contextmanager
    def reader(self) -> Iterator[_Reads]:
        """A read-only snapshot (a deferred read transaction)."""
        self._db.execute("BEGIN")
        try:
            yield _Reads(self._db, self.path)
        finally:
            self._db.execute("ROLLBACK")

    @contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        """``BEGIN IMMEDIATE`` (the writer lock); commit on success, roll back on error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield _Transaction(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def add_traces(self, traces: Mapping[int, str]) -> int:
        """Remember trace ids of appended entries (those already remembered are skipped)."""
        if not traces:
            return 0
        with self.transaction():
            known = set(_Reads(self._db, self.path).trace_ids(traces))
            rows = [(i, t) for i, t in sorted(traces.items()) if i not in known]
            self._db.executemany("INSERT INTO traces(idx, trace_id) VALUES (?, ?)", rows)
        return len(rows)

    def delete_erased_payloads(self, indices: Collection[int]) -> int:
        """Delete the payloads of erased entries (the trigger refuses any other)."""
        deleted = 0
        with self.transaction():
            for part in _chunks(sorted(set(indices))):
                cursor = self._db.execute(
                    f"DELETE FROM payloads WHERE idx IN ({_marks(len(part))})", part
                )
                deleted += cursor.rowcount
        return deleted

    def close(self) -> None:
        """Close the file."""
        self._db.close()
