"""Shared fixtures and builders of the audit sink's integration tests (this module has no tests).

``backend`` is parametrised over the two stores, with one behaviour expected of both:

* ``sqlite``: the log and the key store in two files under ``tmp_path``;
* ``postgres``: a fresh log schema and key schema per test, with their own writer, reader
  and key roles (``NOLOGIN``, granted to the test login so that the stores ``SET ROLE`` to
  them: the database enforces each role's rights). Everything is dropped afterwards. It
  uses the ``pg_dsn`` fixture of ``conftest.py``: skipped locally, failed in CI, when the
  server is down.

``Backend.owner`` runs SQL (``?`` placeholders) with the owner's rights (SQLite: any
connection to the file; PostgreSQL: the schema owner), which is how the tamper tests play
the attacker; ``Backend.disable_triggers`` drops (SQLite) or disables (PostgreSQL) the
triggers of a table, as such an attacker can.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import pytest
from audit_sink.archive import CheckpointArchive
from audit_sink.checkpoint import NoteSigner, NoteVerifier
from audit_sink.keystore import KeyStore
from audit_sink.keystore_sqlite import SqliteKeyStore
from audit_sink.pg_schema import heads_schema_sql, keystore_schema_sql, log_schema_sql
from audit_sink.plan import ConsumedRecord
from audit_sink.sealing import IndexKey
from audit_sink.store import LogStore
from audit_sink.store_sqlite import SqliteLogStore
from audit_sink.verification import verify_log
from audit_sink.verify import Report
from audit_sink.writer import AuditLog, CheckpointPolicy
from sharing_guard.codec import contract_registry
from sharing_guard.contract.audit import AuditKind, AuditRecord
from sharing_guard.contract.decision import Reason
from sharing_guard.contract.enums import Clause, Outcome, ReasonCode

TOPIC = "governance.audit"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def missing_capability(message: str) -> NoReturn:
    """Fail when services are required (CI or REQUIRE_SERVICES=1), else skip: as conftest.py."""
    ci = os.environ.get("CI", "").strip().lower()
    if ci not in ("", "0", "false", "no") or os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} [services are required: CI or REQUIRE_SERVICES=1]")
    pytest.skip(message)


def unique_origin() -> str:
    """A fresh log origin: never reuse one across deployments, tests included."""
    return f"audit.test.invalid/{uuid.uuid4().hex}"


def record(
    n: int,
    *,
    account: str | None = "acct-0001",
    outcome: Outcome = Outcome.BLOCK,
    recipient: str = "rcp-1",
    codes: Sequence[ReasonCode] = (ReasonCode.CONSENT_MISSING,),
    order_ref: str | None = None,
    kind: AuditKind = AuditKind.DECISION,
    minutes: int | None = None,
    policy_version: str = "2026.1",
) -> AuditRecord:
    """An audit record about event ``evt-<n>``; its event JSON names the account."""
    event_id = f"evt-{n:06d}"
    occurred_at = T0 + timedelta(minutes=n if minutes is None else minutes)
    event = {"type": "TransferRequested", "event_id": event_id, "account_id": account}
    return AuditRecord(
        audit_id=f"{kind.value}:{event_id}",
        kind=kind,
        event_id=event_id,
        event_type="TransferRequested",
        occurred_at=occurred_at,
        account_id=account,
        recipient_id=recipient,
        order_ref=order_ref,
        outcome=outcome if kind == AuditKind.DECISION else None,
        reasons=tuple(Reason(code=c, clause=Clause.THIRD_PARTY_CONSENT) for c in codes),
        policy_version=policy_version if kind == AuditKind.DECISION else None,
        event_json=json.dumps(event, sort_keys=True),
    )


def encode(value: AuditRecord) -> bytes:
    """The record as the guard publishes it (Avro single-object encoding)."""
    return contract_registry().encode(value)


def consumed(
    records: Sequence[AuditRecord | bytes | None],
    *,
    start: int = 0,
    partition: int = 0,
    step: int = 1,
    topic: str = TOPIC,
) -> list[ConsumedRecord]:
    """Records as consumed at offsets ``start, start + step, ...`` of one partition."""
    return [
        ConsumedRecord(
            topic,
            partition,
            start + i * step,
            encode(r) if isinstance(r, AuditRecord) else r,
        )
        for i, r in enumerate(records)
    ]


def next_positions(batch: Sequence[ConsumedRecord]) -> dict[tuple[str, int], int]:
    """The consumer positions after a batch (next offset per partition)."""
    positions: dict[tuple[str, int], int] = {}
    for item in batch:
        key = (item.topic, item.partition)
        positions[key] = max(positions.get(key, 0), item.offset + 1)
    return positions


def append_decision_batches(log: AuditLog) -> None:
    """Entries 0-11: three batches of four decisions (offsets 0-11 of one partition).

    Entry ``n`` is about ``acct-<n % 3>`` and ``rcp-<n % 2>``; odd entries are ALLOWs for
    consent, even ones BLOCKs for missing consent; entry 7 is under order ``ord-7``.
    """
    for start in (0, 4, 8):
        records = [
            record(
                n,
                account=f"acct-{n % 3}",
                outcome=Outcome.ALLOW if n % 2 else Outcome.BLOCK,
                codes=(ReasonCode.CONSENT,) if n % 2 else (ReasonCode.CONSENT_MISSING,),
                recipient=f"rcp-{n % 2}",
                order_ref="ord-7" if n == 7 else None,
            )
            for n in range(start, start + 4)
        ]
        batch = consumed(records, start=start)
        log.append_batch(batch, next_positions(batch))


@dataclass
class Backend:
    """One store under test, its key store, and the keys and paths of its log."""

    name: str
    origin: str
    signer: NoteSigner
    index_key: IndexKey
    archive_dir: Path
    open_store: Callable[[], LogStore]
    open_reader: Callable[[], LogStore]
    open_keys: Callable[[], KeyStore]
    owner: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
    disable_triggers: Callable[[str], None]
    opened: list[Any] = field(default_factory=list)

    @property
    def verifier(self) -> NoteVerifier:
        """The pinned verifier key of the log."""
        return self.signer.verifier()

    def store(self) -> LogStore:
        """A new writer-role store connection (closed after the test)."""
        store = self.open_store()
        self.opened.append(store)
        return store

    def keys(self) -> KeyStore:
        """A new key store connection (closed after the test)."""
        keys = self.open_keys()
        self.opened.append(keys)
        return keys

    def log(self, policy: CheckpointPolicy | None = None, **kwargs: Any) -> AuditLog:
        """A writer over fresh connections."""
        return AuditLog(
            store=kwargs.pop("store", None) or self.store(),
            keys=kwargs.pop("keys", None) or self.keys(),
            index_key=self.index_key,
            signer=kwargs.pop("signer", self.signer),
            archive=CheckpointArchive(self.archive_dir),
            policy=policy,
            **kwargs,
        )

    def verify(self, trusted: Sequence[str] = (), chunk_size: int = 7) -> Report:
        """Verify through the reader role (small chunks, to cross chunk boundaries)."""
        store = self.open_reader()
        try:
            with store.reader() as reader:
                return verify_log(
                    reader,
                    trusted_keys=[self.verifier],
                    origin=self.origin,
                    trusted_checkpoints=trusted,
                    chunk_size=chunk_size,
                )
        finally:
            store.close()

    def close(self) -> None:
        """Close every connection opened for the test."""
        for thing in self.opened:
            thing.close()


def sqlite_backend(tmp_path: Path) -> Backend:
    """The SQLite backend alone (for SQLite-only tests); close it after use."""
    origin = unique_origin()
    log_file, keys_file = tmp_path / "log.db", tmp_path / "keys.db"

    def owner(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(log_file, isolation_level=None)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def disable(table: str) -> None:
        triggers = owner(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", [table]
        )
        for (trigger,) in triggers:
            owner(f"DROP TRIGGER {trigger}")

    return Backend(
        name="sqlite",
        origin=origin,
        signer=NoteSigner.generate(origin),
        index_key=IndexKey(os.urandom(32)),
        archive_dir=tmp_path / "checkpoints",
        open_store=lambda: SqliteLogStore(log_file, origin),
        open_reader=lambda: SqliteLogStore(log_file, origin, read_only=True),
        open_keys=lambda: SqliteKeyStore(keys_file),
        owner=owner,
        disable_triggers=disable,
    )


@dataclass(frozen=True)
class PgNames:
    """The schemas and roles of one PostgreSQL test log."""

    schema: str
    keys_schema: str
    writer: str
    reader: str
    key_role: str

    @classmethod
    def fresh(cls) -> PgNames:
        """Unique names for one test."""
        suffix = uuid.uuid4().hex[:12]
        return cls(
            f"audit_t_{suffix}",
            f"audit_k_{suffix}",
            f"audit_w_{suffix}",
            f"audit_r_{suffix}",
            f"audit_key_{suffix}",
        )

    @property
    def roles(self) -> tuple[str, str, str]:
        """The three roles."""
        return (self.writer, self.reader, self.key_role)


def pg_backend(dsn: str, tmp_path: Path, names: PgNames, owner_db: Any) -> Backend:
    """The PostgreSQL backend on fresh ``names`` (created here with ``owner_db``)."""
    from audit_sink.keystore_postgres import PostgresKeyStore
    from audit_sink.store_postgres import PostgresLogStore

    origin = unique_origin()
    for role in names.roles:
        owner_db.execute(f'CREATE ROLE "{role}" NOLOGIN')
        owner_db.execute(f'GRANT "{role}" TO CURRENT_USER')
    owner_db.execute(log_schema_sql(names.schema, names.writer, names.reader))
    owner_db.execute(keystore_schema_sql(names.keys_schema, names.key_role))

    def owner(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with owner_db.transaction():
            owner_db.execute(f'SET LOCAL search_path TO "{names.schema}"')
            cursor = owner_db.execute(sql.replace("?", "%s"), params or None)
            return cursor.fetchall() if cursor.description else []

    def disable(table: str) -> None:
        owner(f"ALTER TABLE {table} DISABLE TRIGGER USER")

    return Backend(
        name="postgres",
        origin=origin,
        signer=NoteSigner.generate(origin),
        index_key=IndexKey(os.urandom(32)),
        archive_dir=tmp_path / "checkpoints",
        open_store=lambda: PostgresLogStore(dsn, names.schema, origin, names.writer),
        open_reader=lambda: PostgresLogStore(dsn, names.schema, origin, names.reader),
        open_keys=lambda: PostgresKeyStore(dsn, names.keys_schema, names.key_role),
        owner=owner,
        disable_triggers=disable,
    )


BLOCKED_IMPORTS = (
    "import runpy, sys\n"
    "sys.modules['audit_sink'] = None\n"
    "sys.modules['sharing_guard'] = None\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)
"""Runs a script with the project's packages made unimportable: the standalone verifier
must need only the standard library and ``cryptography``."""


def verify_export(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run an export's own ``verify_export.py`` on it (``args``: e.g. ``--vkey``), in an
    isolated interpreter that cannot import this project."""
    return subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            BLOCKED_IMPORTS,
            str(directory / "verify_export.py"),
            str(directory),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def install_shard_schemas(owner_db: Any, names: PgNames, shards: int) -> list[str]:
    """The schemas of shards ``0..shards-1`` and of the heads notes, as ``audit-sink
    pg-schema --shards N`` prints them, for ``names``' roles; their names (to drop)."""
    schemas = [f"{names.schema}_shard_{p}" for p in range(shards)]
    for schema in schemas:
        owner_db.execute(log_schema_sql(schema, names.writer, names.reader))
    schemas.append(f"{names.schema}_heads")
    owner_db.execute(heads_schema_sql(schemas[-1], names.writer, names.reader))
    return schemas


def drop_schemas(owner_db: Any, schemas: Sequence[str]) -> None:
    """Drop ``schemas`` (before ``pg_names`` drops the roles that own grants in them)."""
    for schema in schemas:
        owner_db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def install_sharded_pg(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    shards: int,
) -> Any:
    """Fresh roles and schemas (the log's, the key store's, every shard's and the heads
    notes'), dropped after the test, and the ``AUDIT_SINK_*`` environment pointed at them.
    Returns the owner connection."""
    names, owner_db = request.getfixturevalue("pg_names")
    dsn = request.getfixturevalue("pg_dsn")
    pg_backend(dsn, tmp_path, names, owner_db)  # the roles, the log and key store schemas
    schemas = install_shard_schemas(owner_db, names, shards)
    # Runs before pg_names drops the roles: finalizers run last in, first out.
    request.addfinalizer(lambda: drop_schemas(owner_db, schemas))
    for name, value in {
        "BACKEND": "postgres",
        "POSTGRES__DSN": dsn,
        "POSTGRES__SCHEMA_NAME": names.schema,
        "POSTGRES__ROLE": names.writer,
        "POSTGRES__READER_ROLE": names.reader,
        "POSTGRES__KEYS_SCHEMA": names.keys_schema,
        "POSTGRES__KEYS_ROLE": names.key_role,
    }.items():
        monkeypatch.setenv(f"AUDIT_SINK_{name}", value)
    return owner_db


@pytest.fixture
def pg_names(pg_dsn: str) -> Iterator[tuple[PgNames, Any]]:
    """Fresh PostgreSQL names and an owner connection; everything is dropped afterwards."""
    import psycopg

    names = PgNames.fresh()
    with psycopg.connect(pg_dsn, autocommit=True) as owner_db:
        try:
            yield names, owner_db
        finally:
            owner_db.execute(f'DROP SCHEMA IF EXISTS "{names.schema}" CASCADE')
            owner_db.execute(f'DROP SCHEMA IF EXISTS "{names.keys_schema}" CASCADE')
            for role in names.roles:
                exists = owner_db.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)
                ).fetchone()
                if exists:
                    owner_db.execute(f'DROP OWNED BY "{role}"')
                    owner_db.execute(f'DROP ROLE "{role}"')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each store in turn: SQLite files in tmp_path, then a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        built = sqlite_backend(tmp_path)
    else:
        names, owner_db = request.getfixturevalue("pg_names")
        built = pg_backend(request.getfixturevalue("pg_dsn"), tmp_path, names, owner_db)
    try:
        yield built
    finally:
        built.close()
