"""The service's durable state: a SQLite file (adapter).

It holds the order events read from ``legal.orders``, the guard's decisions that named an
order (from ``sharing.decisions``) and, in the same transaction, the next offset of every
partition read. After a restart the follower resumes from those offsets, so nothing is
applied twice and nothing is lost, even once the decisions topic's retention (7 days) has
dropped the records the disclosure counts came from. Deleting the file rebuilds it from
the topics (orders are kept forever; decisions only within their retention).
"""

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

from sharing_guard.contract.decision import Decision
from sharing_guard.contract.enums import Outcome
from sharing_guard.contract.events import (
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
    parse_event_json,
)
from sharing_guard.contract.types import format_timestamp
from sharing_guard.orders.model import Disclosure, OrderEvent, OrderRecord, fold

TopicPartition = tuple[str, int]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS order_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    order_ref TEXT NOT NULL,
    event_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS order_events_ref ON order_events (order_ref, seq);
CREATE TABLE IF NOT EXISTS order_decisions (
    event_id TEXT PRIMARY KEY,
    order_ref TEXT NOT NULL,
    outcome TEXT NOT NULL,
    codes TEXT NOT NULL,
    decided_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS order_decisions_ref ON order_decisions (order_ref, outcome);
CREATE TABLE IF NOT EXISTS offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""


class OrderStore:
    """Order events, order decisions and read offsets, safe to share between threads."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._applied = threading.Condition(self._lock)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # --- writing --------------------------------------------------------------------------

    def apply(
        self,
        events: Iterable[OrderEvent] = (),
        decisions: Iterable[tuple[Decision, datetime]] = (),
        offsets: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        """Store order events and order decisions and advance offsets, all or nothing.

        A repeated ``event_id`` is ignored (idempotent), so a redelivery or the guard's
        republished duplicate decision never counts twice.
        """
        with self._applied:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT OR IGNORE INTO order_events (event_id, order_ref, event_json) "
                    "VALUES (?, ?, ?)",
                    [(e.event_id, e.order_ref, e.model_dump_json()) for e in events],
                )
                db.executemany(
                    "INSERT OR IGNORE INTO order_decisions "
                    "(event_id, order_ref, outcome, codes, decided_at) VALUES (?, ?, ?, ?, ?)",
                    [
                        (
                            d.event_id,
                            d.order_ref,
                            d.outcome.value,
                            json.dumps([c.value for c in d.codes]),
                            format_timestamp(at),
                        )
                        for d, at in decisions
                        if d.order_ref is not None
                    ],
                )
                db.executemany(
                    "INSERT INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?) "
                    "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = "
                    "max(next_offset, excluded.next_offset)",
                    [(t, p, o) for (t, p), o in (offsets or {}).items()],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self._applied.notify_all()

    # --- reading --------------------------------------------------------------------------

    def offsets(self) -> dict[TopicPartition, int]:
        """The next offset to read of every partition read so far."""
        with self._lock:
            rows = self._db.execute("SELECT topic, partition, next_offset FROM offsets")
            return {(t, p): o for t, p, o in rows}

    def wait_applied(self, tp: TopicPartition, offset: int, timeout_s: float) -> bool:
        """Wait until the record at ``offset`` of ``tp`` was applied; False on timeout."""

        def applied() -> bool:
            row = self._db.execute(
                "SELECT next_offset FROM offsets WHERE topic = ? AND partition = ?", tp
            ).fetchone()
            return row is not None and row[0] > offset

        with self._applied:
            return self._applied.wait_for(applied, timeout=timeout_s)

    def _events(self, order_ref: str | None) -> list[OrderEvent]:
        sql = "SELECT event_json FROM order_events"
        args: tuple[str, ...] = ()
        if order_ref is not None:
            sql += " WHERE order_ref = ?"
            args = (order_ref,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        events: list[OrderEvent] = []
        for (raw,) in rows:
            event = parse_event_json(raw)
            if isinstance(event, OrderRegistered | OrderApproved | OrderRevoked):
                events.append(event)
        return events

    def records(self) -> dict[str, OrderRecord]:
        """Every known order's record."""
        return fold(self._events(None))

    def record(self, order_ref: str) -> OrderRecord | None:
        """One order's record, or ``None`` if it was never registered."""
        return fold(self._events(order_ref)).get(order_ref)

    def disclosure_counts(self) -> dict[str, tuple[int, int]]:
        """Per order: (transfers allowed under it, transfers refused naming it)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT order_ref, sum(outcome = ?), sum(outcome != ?) "
                "FROM order_decisions GROUP BY order_ref",
                (Outcome.ALLOW.value, Outcome.ALLOW.value),
            ).fetchall()
        return {ref: (int(allowed), int(refused)) for ref, allowed, refused in rows}

    def disclosures(self, order_ref: str) -> list[Disclosure]:
        """The transfers allowed under an order, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT event_id, decided_at FROM order_decisions "
                "WHERE order_ref = ? AND outcome = ? ORDER BY decided_at, event_id",
                (order_ref, Outcome.ALLOW.value),
            ).fetchall()
        return [Disclosure(event_id, datetime.fromisoformat(at)) for event_id, at in rows]

    def refused(self, order_ref: str) -> int:
        """How many transfers naming the order the guard refused."""
        return self.disclosure_counts().get(order_ref, (0, 0))[1]
