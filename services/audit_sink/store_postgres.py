"""The log store on PostgreSQL (production): a schema installed by :mod:`audit_sink.pg_schema`.

The store connects with a DSN and, if ``role`` is given, ``SET ROLE`` to it (the writer role
for the sink, the reader role for verify and queries), so the database enforces what the
role may do. The writer lock is a transaction-scoped advisory lock named after the schema;
leaf indices are computed under it (``max(idx) + 1``, never a sequence) and the
``leaves_next_index`` trigger refuses any other. Reads run in ``REPEATABLE READ READ ONLY``
transactions, so a verification sees one snapshot; the large scans use server-side cursors.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg

from audit_sink._sql import (
    APPENDED_COLUMNS,
    PG_COPY_TYPES,
    RECORD_COLUMNS,
    appended_rows,
    insert_sql,
    position_rows,
    record_filter,
    record_row,
    save_positions_sql,
)
from audit_sink.pg_schema import quote_identifier
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

__all__ = ["PostgresLogStore", "PostgresSnapshotRef", "connect"]

FORMAT: Final = "audit-sink/postgres/1"
_SNAPSHOT_ID: Final = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")


def connect(dsn: str, role: str | None, schema: str) -> psycopg.Connection[Any]:
    """An autocommit connection with the role set and the search path on ``schema``.

    Connection failures raise :class:`StoreError` with the server's reason but not the DSN
    (which may hold a password).
    """
    try:
        connection = psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"cannot connect to PostgreSQL: {reason}") from None
    try:
        if role is not None:
            connection.execute(f"SET ROLE {quote_identifier(role)}")
        connection.execute(f"SET search_path TO {quote_identifier(schema)}, pg_catalog")
    except BaseException:
        connection.close()
        raise
    return connection


def _copy(cursor: psycopg.Cursor[Any], table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows`` with one binary ``COPY`` (the fastest bulk path; the tables'
    statement and row triggers fire as for an INSERT)."""
    if not rows:
        return
    names = ", ".join(APPENDED_COLUMNS[table])
    with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(PG_COPY_TYPES[table]))
        for row in rows:
            copy.write_row(row)


class _SegmentReads:
    """Index-range reads (the snapshot reader and verification helpers share them)."""

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self._db = db

    def _all(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self._db.cursor(binary=True) as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def leaf_rows_between(self, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
        return self._all(
            "SELECT idx, leaf, leaf_hash FROM leaves WHERE idx >= %s AND idx < %s ORDER BY idx",
            (start, end),
        )

    def payload_rows_between(self, start: int, end: int) -> list[tuple[int, bytes]]:
        return self._all(
            "SELECT idx, sealed FROM payloads WHERE idx >= %s AND idx < %s ORDER BY idx",
            (start, end),
        )


@dataclass(frozen=True)
class PostgresSnapshotRef:
    """An exported snapshot of the log, for verification helpers (``SET TRANSACTION
    SNAPSHOT``: they see exactly what the exporting reader sees)."""

    dsn: str = field(repr=False)
    schema: str
    role: str | None
    snapshot: str

    @contextmanager
    def open(self) -> Iterator[_SegmentReads]:
        """A read-only transaction on the exported snapshot."""
        if _SNAPSHOT_ID.fullmatch(self.snapshot) is None:
            raise StoreError("not a PostgreSQL snapshot id")
        db = connect(self.dsn, self.role, self.schema)
        try:
            with db.transaction():
                db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                db.execute(f"SET TRANSACTION SNAPSHOT '{self.snapshot}'")
                yield _SegmentReads(db)
        finally:
            db.close()


class _Reads(_SegmentReads):
    """Read queries shared by the snapshot reader and the write transaction."""

    def __init__(
        self,
        db: psycopg.Connection[Any],
        share: tuple[str, str, str | None] | None = None,
    ) -> None:
        super().__init__(db)
        self._share = share

    def snapshot_ref(self) -> PostgresSnapshotRef | None:
        if self._share is None:
            return None
        dsn, schema, role = self._share
        snapshot = str(self._all("SELECT pg_export_snapshot()")[0][0])
        return PostgresSnapshotRef(dsn, schema, role, snapshot)

    def payloads_outside(self, start: int, end: int) -> int:
        rows = self._all("SELECT count(*) FROM payloads WHERE idx < %s OR idx >= %s", (start, end))
        return int(rows[0][0])

    def size(self) -> int:
        return int(self._all("SELECT COALESCE(max(idx), -1) + 1 FROM leaves")[0][0])

    def checkpoints(self) -> list[CheckpointRow]:
        rows = self._all("SELECT size, note, peaks FROM checkpoints ORDER BY size")
        return [CheckpointRow(size, note, bytes(peaks)) for size, note, peaks in rows]

    def latest_checkpoint(self) -> CheckpointRow | None:
        rows = self._all("SELECT size, note, peaks FROM checkpoints ORDER BY size DESC LIMIT 1")
        return CheckpointRow(rows[0][0], rows[0][1], bytes(rows[0][2])) if rows else None

    def _scan(self, name: str, sql: str, chunk_size: int) -> Iterator[list[Any]]:
        with self._db.cursor(name=name, binary=True) as cursor:
            cursor.itersize = chunk_size
            cursor.execute(sql)
            while rows := cursor.fetchmany(chunk_size):
                yield rows

    def leaf_chunks(self, chunk_size: int) -> Iterator[list[tuple[int, bytes, bytes]]]:
        yield from self._scan(
            "audit_leaf_scan", "SELECT idx, leaf, leaf_hash FROM leaves ORDER BY idx", chunk_size
        )

    def payload_chunks(self, chunk_size: int) -> Iterator[list[tuple[int, bytes]]]:
        yield from self._scan(
            "audit_payload_scan", "SELECT idx, sealed FROM payloads ORDER BY idx", chunk_size
        )

    def leaf_rows(self, start: int, end: int) -> list[LeafRow]:
        rows = self._all(
            "SELECT idx, leaf, leaf_hash FROM leaves WHERE idx >= %s AND idx < %s ORDER BY idx",
            (start, end),
        )
        return [LeafRow(i, bytes(leaf), bytes(h)) for i, leaf, h in rows]

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        rows = self._all(
            "SELECT leaf_hash FROM leaves WHERE idx >= %s AND idx < %s ORDER BY idx", (start, end)
        )
        return [bytes(h) for (h,) in rows]

    def leaves(self, indices: Collection[int]) -> dict[int, bytes]:
        rows = self._all(
            "SELECT idx, leaf FROM leaves WHERE idx = ANY(%s)", (sorted(set(indices)),)
        )
        return {i: bytes(leaf) for i, leaf in rows}

    def find_record(self, audit_id: str) -> int | None:
        rows = self._all("SELECT idx FROM records WHERE audit_id = %s", (audit_id,))
        return int(rows[0][0]) if rows else None

    def query_records(self, criteria: RecordFilter) -> list[RecordRow]:
        where, params = record_filter(criteria, "%s", "strpos({column}, {mark}) > 0")
        if criteria.indices is not None:
            where.append("idx = ANY(%s)")
            params.append(sorted(set(criteria.indices)))
        sql = f"SELECT {RECORD_COLUMNS} FROM records"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY occurred_at, idx" if criteria.by_time else " ORDER BY idx"
        if criteria.limit is not None:
            sql += " LIMIT %s"
            params.append(criteria.limit)
        return [record_row(row) for row in self._all(sql, params)]

    def payloads(self, indices: Collection[int]) -> dict[int, PayloadRow]:
        rows = self._all(
            "SELECT idx, key_id, account_tag, sealed FROM payloads WHERE idx = ANY(%s)",
            (sorted(set(indices)),),
        )
        return {
            i: PayloadRow(i, key_id, None if tag is None else bytes(tag), bytes(sealed))
            for i, key_id, tag, sealed in rows
        }

    def payload_indices_for_tag(self, account_tag: bytes) -> list[int]:
        rows = self._all(
            "SELECT idx FROM payloads WHERE account_tag = %s ORDER BY idx", (account_tag,)
        )
        return [int(i) for (i,) in rows]

    def trace_ids(self, indices: Collection[int]) -> dict[int, str]:
        if self._all("SELECT to_regclass('traces')")[0][0] is None:
            return {}  # a schema from before the table: re-run pg-schema to add it
        rows = self._all(
            "SELECT idx, trace_id FROM traces WHERE idx = ANY(%s)", (sorted(set(indices)),)
        )
        return {int(i): str(t) for i, t in rows}

    def erased(self, indices: Collection[int] | None = None) -> set[int]:
        if indices is None:
            return {int(i) for (i,) in self._all("SELECT idx FROM erased")}
        rows = self._all("SELECT idx FROM erased WHERE idx = ANY(%s)", (sorted(set(indices)),))
        return {int(i) for (i,) in rows}

    def committed_positions(self) -> dict[TopicPartition, int]:
        rows = self._all("SELECT topic, part, next_offset FROM positions")
        return {(topic, part): offset for topic, part, offset in rows}


class _Transaction(_Reads):
    """The write operations, under the advisory writer lock."""

    def head(self) -> tuple[int, bytes | None]:
        rows = self._all("SELECT idx, leaf_hash FROM leaves ORDER BY idx DESC LIMIT 1")
        return (0, None) if not rows else (int(rows[0][0]) + 1, bytes(rows[0][1]))

    def source_macs(
        self, positions: Collection[Position]
    ) -> dict[Position, dict[bytes, int | None]]:
        wanted = sorted(set(positions))
        if not wanted:
            return {}
        rows = self._all(
            "SELECT s.topic, s.part, s.off, s.content_mac, s.idx FROM sources s "
            "JOIN unnest(%b::text[], %b::integer[], %b::bigint[]) AS w(topic, part, off) "
            "ON s.topic = w.topic AND s.part = w.part AND s.off = w.off",
            ([p[0] for p in wanted], [p[1] for p in wanted], [p[2] for p in wanted]),
        )
        found: dict[Position, dict[bytes, int | None]] = {}
        for topic, part, off, mac, idx in rows:
            found.setdefault((topic, part, off), {})[bytes(mac)] = idx
        return found

    def max_offsets(self, partitions: Collection[TopicPartition]) -> dict[TopicPartition, int]:
        # Not max(off): before the table's first ANALYZE the planner expects one row per
        # partition and aggregates over an index scan of the whole partition (measured
        # growing to 20-40 ms a batch at 60,000 entries); ORDER BY ... LIMIT 1 is planned
        # as a backward scan of the primary key at any statistics (under a millisecond).
        found: dict[TopicPartition, int] = {}
        for topic, part in sorted(set(partitions)):
            rows = self._all(
                "SELECT off FROM sources WHERE topic = %s AND part = %s ORDER BY off DESC LIMIT 1",
                (topic, part),
            )
            if rows:
                found[(topic, part)] = int(rows[0][0])
        return found

    def records_by_audit_id(self, audit_ids: Collection[str]) -> dict[str, tuple[int, bytes]]:
        wanted = sorted(set(audit_ids))
        if not wanted:
            return {}
        if any("\x00" in a for a in wanted):  # not in JSON text (nor in a text column)
            rows = self._all(
                "SELECT audit_id, idx, content_mac FROM records WHERE audit_id = ANY(%b)",
                (wanted,),
            )
        else:
            # The ids as one JSON array: no array parameter for PostgreSQL to plan around
            # (an `= ANY` of a batch's 2,000 ids took 13-34 ms per batch for its first ten
            # executions on a connection, then 3-6 ms; this takes 6 ms from the first) and
            # none for psycopg to build element by element in Python.
            rows = self._all(
                "SELECT r.audit_id, r.idx, r.content_mac "
                "FROM jsonb_array_elements_text(%s::jsonb) AS w(id) "
                "JOIN records r ON r.audit_id = w.id",
                (json.dumps(wanted),),
            )
        return {audit_id: (int(idx), bytes(mac)) for audit_id, idx, mac in rows}

    def append(self, rows: AppendRows) -> None:
        with self._db.cursor() as cursor:
            for table, params in appended_rows(rows):
                if table == "erased":  # a few rows, and rarely any
                    if params:
                        cursor.executemany(insert_sql(table, "%s"), params)
                else:
                    _copy(cursor, table, params)

    def save_positions(self, positions: Mapping[TopicPartition, int]) -> None:
        if not positions:
            return
        with self._db.cursor() as cursor:
            cursor.executemany(save_positions_sql("%s"), position_rows(positions))

    def add_checkpoint(self, row: CheckpointRow) -> None:
        self._db.execute(
            "INSERT INTO checkpoints(size, note, peaks) VALUES (%s, %s, %s)",
            (row.size, row.note, row.peaks),
        )


class PostgresLogStore:
    """The log in a PostgreSQL schema, used through one role."""

    def __init__(self, dsn: str, schema: str, origin: str, role: str | None = None) -> None:
        """Connect; record the origin on first use (``StoreError`` if the schema is another's)."""
        self.schema = schema
        self.origin = origin
        self._dsn = dsn
        self._role = role
        self._lock_key = int.from_bytes(
            hashlib.sha256(f"audit-sink:{schema}".encode()).digest()[:8], "big", signed=True
        )
        self._db = connect(dsn, role, schema)
        try:
            self._check_meta(origin)
        except BaseException:
            self._db.close()
            raise

    def _check_meta(self, origin: str) -> None:
        meta: dict[str, str] = {}
        try:
            with self._db.transaction():
                meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
                if not meta:
                    self._db.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                    meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
                    if not meta:
                        self._db.execute(
                            "INSERT INTO meta(key, value) VALUES ('origin', %s), ('format', %s)",
                            (origin, FORMAT),
                        )
                        return
        except psycopg.errors.UndefinedTable:
            raise StoreError(
                f"schema {self.schema} has no audit log tables: install it first "
                "(audit-sink pg-schema)"
            ) from None
        except psycopg.errors.InsufficientPrivilege:
            if not meta:
                return  # a reader on an empty log: nothing to check yet
            raise
        if meta.get("origin") != origin or meta.get("format") != FORMAT:
            raise StoreError(f"schema {self.schema} holds another log (origin or format differ)")

    @contextmanager
    def reader(self) -> Iterator[_Reads]:
        """A ``REPEATABLE READ READ ONLY`` snapshot."""
        with self._db.transaction():
            self._db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield _Reads(self._db, (self._dsn, self.schema, self._role))

    @contextmanager
    def transaction(self) -> Iterator[_Transaction]:
        """A transaction holding the advisory writer lock; commits when the block exits."""
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
            yield _Transaction(self._db)

    def add_traces(self, traces: Mapping[int, str]) -> int:
        """Remember trace ids of appended entries (those already remembered are skipped)."""
        if not traces:
            return 0
        try:
            with self._db.transaction(), self._db.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO traces(idx, trace_id) VALUES (%s, %s) "
                    "ON CONFLICT (idx) DO NOTHING",
                    sorted(traces.items()),
                )
                return max(cursor.rowcount, 0)
        except psycopg.errors.UndefinedTable:
            raise StoreError(
                f"schema {self.schema} has no traces table: re-run audit-sink pg-schema"
            ) from None

    def delete_erased_payloads(self, indices: Collection[int]) -> int:
        """Delete the payloads of erased entries (the trigger refuses any other)."""
        with self._db.transaction():
            cursor = self._db.execute(
                "DELETE FROM payloads WHERE idx = ANY(%s)", (sorted(set(indices)),)
            )
            return cursor.rowcount

    def close(self) -> None:
        """Close the connection."""
        self._db.close()
