"""The key store in its own SQLite file (the embedded default), separate from the log file.

The file is created with mode 0600. ``secure_delete`` overwrites deleted keys in the file and
the rollback journal (not WAL) keeps no copy after a commit; copies in backups or in freed
file-system blocks are out of its reach (see docs/audit-trail.md).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Collection
from pathlib import Path

from audit_sink.sealing import SubjectKey, new_key, new_key_id

__all__ = ["SqliteKeyStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subject_keys (
    key_id TEXT PRIMARY KEY,
    account_tag BLOB UNIQUE,
    key BLOB NOT NULL CHECK (length(key) = 32),
    created_at INTEGER NOT NULL
);
"""


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


class SqliteKeyStore:
    """Subject keys in a SQLite file of their own."""

    def __init__(self, path: Path) -> None:
        """Open (creating with mode 0600) the key file at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode = DELETE")
        self._db.execute("PRAGMA secure_delete = ON")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(_SCHEMA)

    def keys_for_tags(self, tags: Collection[bytes], *, create: bool) -> dict[bytes, SubjectKey]:
        """The live key of each tag; with ``create``, missing ones are created and committed."""
        wanted = list(dict.fromkeys(tags))
        if not wanted:
            return {}
        if not create:
            return self._by_tags(wanted)
        # Insert a new key for every tag, keeping any existing one (ON CONFLICT DO NOTHING):
        # when every insert took effect (the usual case: the writer asks only for tags it
        # found missing), the keys are the ones just written; otherwise read them all back.
        now = int(time.time())
        rows = [(new_key_id(), tag, new_key(), now) for tag in wanted]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            before = self._db.total_changes
            self._db.executemany(
                "INSERT INTO subject_keys(key_id, account_tag, key, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(account_tag) DO NOTHING",
                rows,
            )
            inserted = self._db.total_changes - before
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        if inserted == len(rows):
            return {tag: SubjectKey(key_id, key) for key_id, tag, key, _ in rows}
        return self._by_tags(wanted)

    def _by_tags(self, tags: list[bytes]) -> dict[bytes, SubjectKey]:
        found: dict[bytes, SubjectKey] = {}
        for start in range(0, len(tags), 500):
            part = tags[start : start + 500]
            rows = self._db.execute(
                "SELECT account_tag, key_id, key FROM subject_keys "
                f"WHERE account_tag IN ({_placeholders(len(part))})",
                part,
            )
            for tag, key_id, key in rows:
                found[bytes(tag)] = SubjectKey(key_id, bytes(key))
        return found

    def orphan_key(self) -> SubjectKey:
        """A new committed key tied to no account."""
        key = SubjectKey(new_key_id(), new_key())
        self._db.execute(
            "INSERT INTO subject_keys(key_id, account_tag, key, created_at) VALUES (?, NULL, ?, ?)",
            (key.key_id, key.key, int(time.time())),
        )
        return key

    def keys(self, key_ids: Collection[str]) -> dict[str, SubjectKey]:
        """The keys that still exist among ``key_ids``."""
        ids = list(dict.fromkeys(key_ids))
        found: dict[str, SubjectKey] = {}
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            rows = self._db.execute(
                "SELECT key_id, key FROM subject_keys "
                f"WHERE key_id IN ({_placeholders(len(part))})",
                part,
            )
            for key_id, key in rows:
                found[key_id] = SubjectKey(key_id, bytes(key))
        return found

    def destroy(self, tag: bytes) -> int:
        """Delete the keys of a tag (committed); return how many were deleted."""
        cursor = self._db.execute("DELETE FROM subject_keys WHERE account_tag = ?", (tag,))
        return cursor.rowcount

    def close(self) -> None:
        """Close the file."""
        self._db.close()
