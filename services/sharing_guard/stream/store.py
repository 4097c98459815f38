"""The worker's local state: one SQLite file on local disk, kept between restarts.

For every changelog partition it holds, the store keeps **exactly a prefix** of that
changelog: the entries (key to value) the records below ``next_offset`` leave, and
``next_offset`` itself, written in the same transaction. A restart therefore replays
only the changelog records at and above ``next_offset`` (normally none, or one batch
after a crash); a lost file replays the whole changelog, which is compacted and holds
no entry older than the idempotency window (see :mod:`sharing_guard.stream.window`).

An entry may carry ``expires_at`` (epoch ms): idempotency entries do, state records
(consents, rights, recipients, orders) do not. :meth:`LocalStore.expired` lists the
entries past it, for the worker to tombstone in the changelog and then delete here.

Reads are point lookups on the primary key. A bounded cache keeps the values of keys
with one of ``cached`` prefixes (state records: the recipients most transfers go to, the
accounts of a batch), never idempotency entries, which are written once and rarely read
again. The store does no Kafka I/O and reads no clock: callers pass offsets and times.
"""

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    changelog TEXT NOT NULL,
    part INTEGER NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (changelog, part, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_expiry
    ON entries (changelog, part, expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS positions (
    changelog TEXT NOT NULL,
    part INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (changelog, part)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class Write:
    """One changelog record's effect: ``value`` ``None`` removes the key (a tombstone)."""

    key: bytes
    value: bytes | None
    expires_at: int | None = None


class LocalStore:
    """Entries and positions of changelog partitions in one SQLite file."""

    def __init__(
        self, path: Path, cached: tuple[bytes, ...] = (), cache_size: int = 16_384
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # WAL and NORMAL sync: a power cut may lose the last transactions, never mix them;
        # the store then holds an older prefix and replays a little more.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._cache: dict[tuple[str, int, bytes], bytes | None] = {}
        self._cache_size = cache_size
        self._cached = cached

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def position(self, changelog: str, part: int) -> int | None:
        """The next changelog offset not reflected here, or ``None`` if the partition was
        never restored into this store."""
        row = self._db.execute(
            "SELECT next_offset FROM positions WHERE changelog = ? AND part = ?",
            (changelog, part),
        ).fetchone()
        return None if row is None else int(row[0])

    def updated_ms(self, changelog: str, part: int) -> int | None:
        """When the partition's position last moved (epoch ms), or ``None``."""
        row = self._db.execute(
            "SELECT updated_ms FROM positions WHERE changelog = ? AND part = ?",
            (changelog, part),
        ).fetchone()
        return None if row is None else int(row[0])

    def get(self, changelog: str, part: int, key: bytes) -> bytes | None:
        """The value of ``key``, or ``None``."""
        cache_key = (changelog, part, key)
        if cache_key in self._cache:
            return self._cache[cache_key]
        row = self._db.execute(
            "SELECT value FROM entries WHERE changelog = ? AND part = ? AND key = ?",
            cache_key,
        ).fetchone()
        value = None if row is None else bytes(row[0])
        self._remember(cache_key, value)
        return value

    def _remember(self, cache_key: tuple[str, int, bytes], value: bytes | None) -> None:
        if not cache_key[2].startswith(self._cached):
            return
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[cache_key] = value

    def apply(
        self, changelog: str, part: int, next_offset: int, writes: Sequence[Write], now_ms: int
    ) -> None:
        """Apply ``writes`` (in order) and move the partition's position to ``next_offset``,
        in one transaction."""
        db = self._db
        db.execute("BEGIN")
        try:
            for write in writes:
                cache_key = (changelog, part, write.key)
                if write.value is None:
                    db.execute(
                        "DELETE FROM entries WHERE changelog = ? AND part = ? AND key = ?",
                        cache_key,
                    )
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)",
                        (*cache_key, write.value, write.expires_at),
                    )
                self._remember(cache_key, write.value)
            db.execute(
                "INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?)",
                (changelog, part, next_offset, now_ms),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._cache.clear()
            raise

    def reset(self, changelog: str, part: int, next_offset: int, now_ms: int) -> None:
        """Forget every entry of the partition and start it again at ``next_offset``
        (a changelog that no longer continues what the store holds)."""
        db = self._db
        db.execute("BEGIN")
        db.execute("DELETE FROM entries WHERE changelog = ? AND part = ?", (changelog, part))
        db.execute(
            "INSERT OR REPLACE INTO positions VALUES (?, ?, ?, ?)",
            (changelog, part, next_offset, now_ms),
        )
        db.execute("COMMIT")
        self._cache.clear()

    def expired(self, changelog: str, part: int, now_ms: int, limit: int) -> list[bytes]:
        """Keys of at most ``limit`` entries whose ``expires_at`` is before ``now_ms``,
        oldest first."""
        rows = self._db.execute(
            "SELECT key FROM entries WHERE changelog = ? AND part = ? AND expires_at < ?"
            " ORDER BY expires_at LIMIT ?",
            (changelog, part, now_ms, limit),
        ).fetchall()
        return [bytes(row[0]) for row in rows]

    def forget_expired(self, changelog: str, part: int, now_ms: int) -> int:
        """Delete the partition's entries past their expiry without moving its position:
        for a partition another worker writes, whose tombstones for them are on their way
        (a restore applies them again, harmlessly). The number deleted."""
        deleted = self._db.execute(
            "DELETE FROM entries WHERE changelog = ? AND part = ? AND expires_at < ?",
            (changelog, part, now_ms),
        ).rowcount
        return int(deleted)

    def partitions(self) -> list[tuple[str, int]]:
        """Every changelog partition this store holds a prefix of."""
        rows = self._db.execute("SELECT changelog, part FROM positions ORDER BY 1, 2").fetchall()
        return [(str(row[0]), int(row[1])) for row in rows]

    def count(self, changelog: str, parts: Iterable[int] | None = None) -> int:
        """How many entries the changelog's partitions (all, or ``parts``) hold here."""
        if parts is None:
            row = self._db.execute(
                "SELECT count(*) FROM entries WHERE changelog = ?", (changelog,)
            ).fetchone()
            return int(row[0])
        return sum(
            int(
                self._db.execute(
                    "SELECT count(*) FROM entries WHERE changelog = ? AND part = ?",
                    (changelog, part),
                ).fetchone()[0]
            )
            for part in parts
        )
