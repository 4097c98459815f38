"""Where a sharded trail keeps its heads notes (:mod:`audit_sink.heads`): one table
``heads(seq, note)``, append-only, each note at the next sequence number.

Every sink of the group publishes to it after each checkpoint of a shard it writes, under
the store's lock (SQLite ``BEGIN IMMEDIATE`` on its own file; PostgreSQL a transaction-scoped
advisory lock, the table in a schema of its own), so two sinks never publish two notes
for one sequence number and each note is built from the one before it.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from audit_sink.store import StoreError

__all__ = ["HeadsStore", "PostgresHeadsStore", "SqliteHeadsStore", "pg_schemas"]

Latest = tuple[int, str] | None
"""The latest stored note and its sequence number, if any."""

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS heads (seq INTEGER PRIMARY KEY CHECK (seq >= 1), note TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS heads_next_seq BEFORE INSERT ON heads
WHEN NEW.seq <> COALESCE((SELECT max(seq) FROM heads), 0) + 1
BEGIN SELECT RAISE(ABORT, 'heads note is not the next one'); END;
CREATE TRIGGER IF NOT EXISTS heads_no_update BEFORE UPDATE ON heads
BEGIN SELECT RAISE(ABORT, 'heads is append-only'); END;
CREATE TRIGGER IF NOT EXISTS heads_no_delete BEFORE DELETE ON heads
BEGIN SELECT RAISE(ABORT, 'heads is append-only'); END;
"""


class HeadsStore(Protocol):
    """The port: read the notes, publish the next one under the lock."""

    def notes(self) -> list[tuple[int, str]]:
        """Every stored note with its sequence number, ascending."""
        ...

    def latest(self) -> Latest:
        """The latest note, if any."""
        ...

    def publish(self, build: Callable[[Latest], str | None]) -> Latest:
        """Under the lock, store ``build(latest)`` as the next note unless it is ``None``;
        return what was stored (``None`` when nothing was)."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class SqliteHeadsStore:
    """The heads notes in a SQLite file of their own (created 0600 unless read-only)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """Open (or create, unless ``read_only``) the file."""
        self.path = path
        if read_only:
            if not path.is_file():
                raise StoreError(f"no heads notes at {path}")
            uri = f"{path.resolve().as_uri()}?mode=ro"
            self._db = sqlite3.connect(
                uri, uri=True, isolation_level=None, timeout=30, check_same_thread=False
            )
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        # Used by one thread at a time, but not always the one that opened it: kafka-python
        # runs the ingest's rebalance listener (which reads the latest note) on its own.
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(_SQLITE_SCHEMA)

    def notes(self) -> list[tuple[int, str]]:
        """Every stored note, ascending."""
        return [
            (int(s), str(n))
            for s, n in self._db.execute("SELECT seq, note FROM heads ORDER BY seq")
        ]

    def latest(self) -> Latest:
        """The latest note, if any."""
        row = self._db.execute("SELECT seq, note FROM heads ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def publish(self, build: Callable[[Latest], str | None]) -> Latest:
        """Store the next note under ``BEGIN IMMEDIATE``."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            latest = self.latest()
            note = build(latest)
            stored = None
            if note is not None:
                seq = 1 if latest is None else latest[0] + 1
                self._db.execute("INSERT INTO heads(seq, note) VALUES (?, ?)", (seq, note))
                stored = (seq, note)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return stored

    def close(self) -> None:
        """Close the file."""
        self._db.close()


class PostgresHeadsStore:
    """The heads notes in a PostgreSQL schema installed by ``audit-sink pg-schema``."""

    def __init__(self, dsn: str, schema: str, role: str | None = None) -> None:
        """Connect (with the role set and the search path on ``schema``)."""
        from audit_sink.store_postgres import connect

        self.schema = schema
        self._lock_key = int.from_bytes(
            hashlib.sha256(f"audit-sink-heads:{schema}".encode()).digest()[:8], "big", signed=True
        )
        self._db = connect(dsn, role, schema)
        if not self._installed():
            self._db.close()
            raise StoreError(
                f"schema {schema} has no heads table: install it first "
                "(audit-sink pg-schema --shards N)"
            )

    def _installed(self) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s "
            "AND table_name = 'heads'",
            (self.schema,),
        ).fetchone()
        return row is not None

    def notes(self) -> list[tuple[int, str]]:
        """Every stored note, ascending."""
        rows = self._db.execute("SELECT seq, note FROM heads ORDER BY seq").fetchall()
        return [(int(s), str(n)) for s, n in rows]

    def latest(self) -> Latest:
        """The latest note, if any."""
        row: Any = self._db.execute(
            "SELECT seq, note FROM heads ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
            yield

    def publish(self, build: Callable[[Latest], str | None]) -> Latest:
        """Store the next note under the advisory lock."""
        with self._locked():
            latest = self.latest()
            note = build(latest)
            if note is None:
                return None
            seq = 1 if latest is None else latest[0] + 1
            self._db.execute("INSERT INTO heads(seq, note) VALUES (%s, %s)", (seq, note))
            return (seq, note)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


def pg_schemas(dsn: str, prefix: str) -> list[str]:
    """The schemas whose name is ``prefix`` or starts with it (from ``pg_namespace``, which
    every role may read), sorted."""
    from audit_sink.store_postgres import connect

    db = connect(dsn, None, "pg_catalog")
    try:
        rows = db.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = %s OR starts_with(nspname, %s)",
            (prefix, prefix + "_"),
        ).fetchall()
    finally:
        db.close()
    return sorted(str(row[0]) for row in rows)
