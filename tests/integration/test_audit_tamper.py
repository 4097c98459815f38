"""Tampering with the stored log, on both stores: ``verify`` catches it at the right index.

The attacker here has the database owner's rights (SQLite: the file; PostgreSQL: the
schema owner), drops or disables the triggers when they are in the way, and edits rows.
The log holds 12 entries (0-11) appended in three batches of four, so it has signed
checkpoints at sizes 4, 8 and 12, also archived outside the database. Then the database
defences themselves: roles without UPDATE/DELETE/TRUNCATE, triggers that
``session_replication_role`` does not skip, and SQLite's ``INSERT OR REPLACE`` closed.
"""

# The fixtures come from test_audit_support; pytest resolves parameters named after them.
# ruff: noqa: F811

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from audit_sink.archive import CheckpointArchive
from audit_sink.checkpoint import NoteSigner, sign_checkpoint
from audit_sink.leaf import EntryType, Source, encode_leaf, record_body
from audit_sink.merkle import leaf_hash
from audit_sink.verify import ProblemCode, Report
from audit_sink.writer import AuditLog, WriterError
from sharing_guard.contract.enums import Outcome
from test_audit_support import (
    TOPIC,
    Backend,
    backend,  # noqa: F401
    consumed,
    missing_capability,
    next_positions,
    pg_names,  # noqa: F401
    record,
    sqlite_backend,
)

SIZE = 12


def populate(backend: Backend, log: AuditLog | None = None, changed: int | None = None) -> None:
    """Append entries 0-11 in three batches; ``changed`` flips that record's outcome."""
    log = log or backend.log()
    for start in (0, 4, 8):
        records = [
            record(
                n,
                account=f"acct-{n % 3}",
                outcome=Outcome.ALLOW if n == changed else Outcome.BLOCK,
            )
            for n in range(start, start + 4)
        ]
        batch = consumed(records, start=start)
        log.append_batch(batch, next_positions(batch))


def leaf_at(backend: Backend, index: int) -> tuple[bytes, bytes]:
    rows = backend.owner("SELECT leaf, leaf_hash FROM leaves WHERE idx = ?", [index])
    return bytes(rows[0][0]), bytes(rows[0][1])


def set_leaf(backend: Backend, index: int, leaf: bytes, stored_hash: bytes | None = None) -> None:
    backend.owner(
        "UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = ?",
        [leaf, stored_hash if stored_hash is not None else leaf_at(backend, index)[1], index],
    )


def first(report: Report) -> Any:
    assert not report.ok
    assert report.first is not None
    return report.first


def archived_notes(backend: Backend) -> list[str]:
    archive = CheckpointArchive(backend.archive_dir)
    return [archive.read(size) or "" for size in archive.sizes()]


@pytest.fixture
def log(backend: Backend) -> AuditLog:
    """A writer over the populated log."""
    writer = backend.log()
    populate(backend, writer)
    assert backend.verify().ok
    return writer


# -- edits of entries -----------------------------------------------------------------------


@pytest.mark.usefixtures("log")
def test_a_changed_leaf_byte_is_pinned_to_its_entry(backend: Backend) -> None:
    backend.disable_triggers("leaves")
    leaf, _ = leaf_at(backend, 5)
    set_leaf(backend, 5, leaf[:-2] + bytes([leaf[-2] ^ 1]) + leaf[-1:])

    problem = first(backend.verify())

    assert (problem.index, problem.code) == (5, ProblemCode.LEAF_HASH_MISMATCH)


@pytest.mark.usefixtures("log")
def test_a_changed_leaf_with_its_stored_hash_recomputed_is_pinned_by_the_chain(
    backend: Backend,
) -> None:
    backend.disable_triggers("leaves")
    leaf, _ = leaf_at(backend, 5)
    forged = leaf.replace(b'"outcome":"BLOCK"', b'"outcome":"ALLOW"')
    assert forged != leaf
    set_leaf(backend, 5, forged, leaf_hash(forged))

    report = backend.verify()

    problem = first(report)
    assert (problem.index, problem.code) == (5, ProblemCode.CHAIN_BREAK)
    assert ProblemCode.ROOT_MISMATCH in {p.code for p in report.problems}


@pytest.mark.usefixtures("log")
def test_a_deleted_entry_is_pinned_to_its_index(backend: Backend) -> None:
    for table in ("leaves", "payloads", "records", "sources"):
        backend.disable_triggers(table)
    for table in ("payloads", "records", "sources", "leaves"):
        backend.owner(f"DELETE FROM {table} WHERE idx = ?", [5])

    problem = first(backend.verify())

    assert (problem.index, problem.code) == (5, ProblemCode.MISSING_ENTRIES)


@pytest.mark.usefixtures("log")
def test_two_swapped_entries_are_pinned_to_the_first(backend: Backend) -> None:
    backend.disable_triggers("leaves")
    three, six = leaf_at(backend, 3), leaf_at(backend, 6)
    set_leaf(backend, 3, *six)
    set_leaf(backend, 6, *three)

    problem = first(backend.verify())

    assert (problem.index, problem.code) == (3, ProblemCode.MISPLACED_ENTRY)


@pytest.mark.usefixtures("log")
def test_an_inserted_entry_is_pinned_to_where_it_was_inserted(backend: Backend) -> None:
    backend.disable_triggers("leaves")
    rows = [leaf_at(backend, i) for i in range(SIZE)]
    forged = encode_leaf(
        EntryType.RECORD,
        index=5,
        prev=rows[4][1],
        payload_digest=None,
        source=Source(TOPIC, 1, 0),  # another partition: its offsets give nothing away
        body=record_body(record(99, account=None), sealed=False),
    )
    backend.owner("INSERT INTO leaves(idx, leaf, leaf_hash) VALUES (?, ?, ?)", [SIZE, *rows[-1]])
    for i in range(SIZE - 1, 5, -1):
        set_leaf(backend, i, *rows[i - 1])
    set_leaf(backend, 5, forged, leaf_hash(forged))

    problem = first(backend.verify())

    assert problem.index == 5
    assert problem.code == ProblemCode.MISPLACED_ENTRY


# -- truncation, rollback, rewrite ----------------------------------------------------------


def _truncate(backend: Backend, keep: int) -> None:
    for table in ("leaves", "payloads", "records", "sources", "checkpoints"):
        backend.disable_triggers(table)
    for table in ("payloads", "records", "sources"):
        backend.owner(f"DELETE FROM {table} WHERE idx >= ?", [keep])
    backend.owner("DELETE FROM leaves WHERE idx >= ?", [keep])
    backend.owner("DELETE FROM checkpoints WHERE size > ?", [keep])


@pytest.mark.usefixtures("log")
def test_a_truncated_tail_is_caught_against_an_external_checkpoint(backend: Backend) -> None:
    trusted = archived_notes(backend)[-1]
    _truncate(backend, keep=8)

    alone = backend.verify()
    against = backend.verify(trusted=[trusted])

    assert alone.ok, "without an external checkpoint, a clean truncation is undetectable"
    problem = first(against)
    assert (problem.index, problem.code, problem.checkpoint_size) == (8, ProblemCode.FORK, 12)


@pytest.mark.usefixtures("log")
def test_a_truncated_tail_leaving_its_checkpoints_is_caught_alone(backend: Backend) -> None:
    for table in ("leaves", "payloads", "records", "sources"):
        backend.disable_triggers(table)
    for table in ("payloads", "records", "sources", "leaves"):
        backend.owner(f"DELETE FROM {table} WHERE idx >= ?", [10])

    problem = first(backend.verify())

    assert (problem.index, problem.code, problem.checkpoint_size) == (
        10,
        ProblemCode.TRUNCATED,
        12,
    )


def test_the_writer_refuses_to_continue_a_rolled_back_log(backend: Backend) -> None:
    populate(backend)
    _truncate(backend, keep=8)

    with pytest.raises(WriterError, match="archive"):
        backend.log().append_batch(consumed([record(50)], start=50), {})


def test_a_consistently_rewritten_database_is_caught_against_external_checkpoints(
    backend: Backend, tmp_path: Path
) -> None:
    populate(backend)
    trusted = archived_notes(backend)
    # The attacker holds the signing key: keeps entries 0-4, rewrites entry 5 (BLOCK to
    # ALLOW) and everything after it, and signs checkpoints 8 and 12 again.
    _truncate(backend, keep=5)
    attacker = AuditLog(
        store=backend.store(),
        keys=backend.keys(),
        index_key=backend.index_key,
        signer=backend.signer,
        archive=CheckpointArchive(tmp_path / "attacker"),
    )
    rewritten = [record(5, account="acct-2", outcome=Outcome.ALLOW)]
    rewritten += [record(n, account=f"acct-{n % 3}") for n in range(6, 12)]
    attacker.append_batch(consumed(rewritten[:3], start=5), {})
    attacker.append_batch(consumed(rewritten[3:], start=8), {})

    alone = backend.verify()
    against = backend.verify(trusted=trusted)

    assert alone.ok, "a consistent rewrite with the key is undetectable from the inside"
    assert alone.size == SIZE
    problem = first(against)
    assert problem.code == ProblemCode.FORK
    assert (problem.index, problem.range_end) == (4, 8)


# -- checkpoints ----------------------------------------------------------------------------


@pytest.mark.usefixtures("log")
def test_a_forged_checkpoint_fails_its_signature(backend: Backend) -> None:
    backend.disable_triggers("checkpoints")
    note = backend.owner("SELECT note FROM checkpoints WHERE size = ?", [8])[0][0]
    lines = note.split("\n")
    lines[2] = sign_checkpoint(backend.origin, 8, bytes(32), backend.signer).split("\n")[2]
    backend.owner("UPDATE checkpoints SET note = ? WHERE size = ?", ["\n".join(lines), 8])

    problem = first(backend.verify())

    assert (problem.code, problem.checkpoint_size) == (ProblemCode.CHECKPOINT_INVALID, 8)
    assert "does not verify" in problem.message


@pytest.mark.usefixtures("log")
def test_a_checkpoint_signed_by_another_key_is_rejected(backend: Backend) -> None:
    backend.disable_triggers("checkpoints")
    roots = [leaf_at(backend, i)[1] for i in range(8)]
    from audit_sink.merkle import root_of

    stranger = NoteSigner.generate(backend.origin)
    note = sign_checkpoint(backend.origin, 8, root_of(roots), stranger)
    backend.owner("UPDATE checkpoints SET note = ? WHERE size = ?", [note, 8])

    problem = first(backend.verify())

    assert (problem.code, problem.checkpoint_size) == (ProblemCode.CHECKPOINT_INVALID, 8)
    assert "no signature from a trusted key" in problem.message


# -- payloads -------------------------------------------------------------------------------


@pytest.mark.usefixtures("log")
def test_a_changed_payload_is_pinned_to_its_entry(backend: Backend) -> None:
    backend.disable_triggers("payloads")
    sealed = bytes(backend.owner("SELECT sealed FROM payloads WHERE idx = ?", [5])[0][0])
    backend.owner(
        "UPDATE payloads SET sealed = ? WHERE idx = ?", [sealed[:-1] + bytes([sealed[-1] ^ 1]), 5]
    )

    problem = first(backend.verify())

    assert (problem.index, problem.code) == (5, ProblemCode.PAYLOAD_MISMATCH)


@pytest.mark.usefixtures("log")
def test_a_payload_deleted_without_an_erasure_entry_is_missing(backend: Backend) -> None:
    with pytest.raises(Exception, match="only erased payloads may be deleted"):
        backend.owner("DELETE FROM payloads WHERE idx = ?", [5])
    backend.disable_triggers("payloads")
    backend.owner("DELETE FROM payloads WHERE idx = ?", [5])

    report = backend.verify()

    problem = first(report)
    assert (problem.index, problem.code) == (5, ProblemCode.PAYLOAD_MISSING)
    assert report.erased == 0


# -- the database's own defences ------------------------------------------------------------


@pytest.mark.usefixtures("log")
def test_triggers_refuse_updates_and_deletes_even_to_the_owner(backend: Backend) -> None:
    for sql in (
        "UPDATE leaves SET leaf_hash = leaf_hash WHERE idx = 1",
        "DELETE FROM leaves WHERE idx = 11",
        "UPDATE checkpoints SET note = note",
        "DELETE FROM records",
        "UPDATE payloads SET key_id = key_id",
    ):
        with pytest.raises(Exception, match="append-only"):
            backend.owner(sql, [])
    assert backend.verify().ok


@pytest.mark.usefixtures("log")
def test_triggers_dropped_then_rows_edited_is_caught(backend: Backend) -> None:
    if backend.name == "postgres":
        backend.owner("DROP TRIGGER leaves_no_update ON leaves", [])
    else:
        backend.owner("DROP TRIGGER leaves_no_update", [])
    leaf, _ = leaf_at(backend, 2)
    forged = leaf.replace(b'"outcome":"BLOCK"', b'"outcome":"ALLOW"')
    set_leaf(backend, 2, forged, leaf_hash(forged))

    problem = first(backend.verify())

    assert (problem.index, problem.code) == (2, ProblemCode.CHAIN_BREAK)


def test_sqlite_insert_or_replace_is_refused_and_detected_once_forced(tmp_path: Path) -> None:
    backend = sqlite_backend(tmp_path)
    populate(backend)
    leaf, stored = leaf_at(backend, 5)
    forged = leaf.replace(b'"outcome":"BLOCK"', b'"outcome":"ALLOW"')

    with pytest.raises(Exception, match="next index"):
        backend.owner(
            "INSERT OR REPLACE INTO leaves(idx, leaf, leaf_hash) VALUES (?, ?, ?)",
            [5, forged, leaf_hash(forged)],
        )
    assert leaf_at(backend, 5) == (leaf, stored)
    assert backend.verify().ok

    backend.owner("DROP TRIGGER leaves_next_index", [])  # update and delete triggers stay
    backend.owner(
        "INSERT OR REPLACE INTO leaves(idx, leaf, leaf_hash) VALUES (?, ?, ?)",
        [5, forged, leaf_hash(forged)],
    )
    problem = first(backend.verify())
    assert (problem.index, problem.code) == (5, ProblemCode.CHAIN_BREAK)
    backend.close()


# -- PostgreSQL roles and session_replication_role ------------------------------------------


def _as_role(dsn: str, role: str, schema: str) -> Any:
    import psycopg

    connection = psycopg.connect(dsn, autocommit=True)
    connection.execute(f'SET ROLE "{role}"')
    connection.execute(f'SET search_path TO "{schema}"')
    return connection


@pytest.mark.postgres
def test_the_writer_role_cannot_update_delete_or_truncate(
    pg_dsn: str, pg_names: Any, tmp_path: Path
) -> None:
    import psycopg
    from test_audit_support import pg_backend

    names, owner_db = pg_names
    built = pg_backend(pg_dsn, tmp_path, names, owner_db)
    try:
        populate(built)
        writer = _as_role(pg_dsn, names.writer, names.schema)
        try:
            for sql in (
                "UPDATE leaves SET leaf_hash = leaf_hash",
                "DELETE FROM leaves",
                "TRUNCATE leaves CASCADE",
                "UPDATE payloads SET sealed = sealed",
                "DELETE FROM checkpoints",
                "TRUNCATE checkpoints",
                "UPDATE records SET outcome = 'ALLOW'",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    writer.execute(sql)
            with pytest.raises(psycopg.errors.RaiseException, match="only erased payloads"):
                writer.execute("DELETE FROM payloads WHERE idx = 1")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                writer.execute(f'SELECT * FROM "{names.keys_schema}".subject_keys')
        finally:
            writer.close()
        assert built.verify().ok
    finally:
        built.close()


@pytest.mark.postgres
def test_every_trigger_fires_always_even_for_replicas(
    pg_dsn: str, pg_names: Any, tmp_path: Path
) -> None:
    import psycopg
    from test_audit_support import pg_backend

    names, owner_db = pg_names
    built = pg_backend(pg_dsn, tmp_path, names, owner_db)
    try:
        populate(built)
        enabled = built.owner(
            "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t "
            "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ? AND NOT t.tgisinternal",
            [names.schema],
        )
        tables = (
            "meta",
            "leaves",
            "records",
            "sources",
            "erased",
            "checkpoints",
            "payloads",
            "traces",
        )
        expected = {(t, f"{t}_no_update") for t in tables}
        expected |= {(t, f"{t}_no_truncate") for t in tables}
        expected |= {(t, f"{t}_no_delete") for t in tables if t != "payloads"}
        expected |= {
            ("leaves", "leaves_next_index"),
            ("checkpoints", "checkpoints_grow"),
            ("payloads", "payloads_insert_unerased"),
            ("payloads", "payloads_delete_erased_only"),
        }
        assert {(table, name) for table, name, _ in enabled} == expected
        assert {state for _, _, state in enabled} == {"A"}, enabled
        try:
            owner_db.execute("SET session_replication_role = replica")
        except psycopg.errors.InsufficientPrivilege:
            missing_capability(
                "setting session_replication_role needs: GRANT SET ON PARAMETER "
                "session_replication_role TO <test role> (as a superuser)"
            )
        try:
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                built.owner("UPDATE leaves SET leaf_hash = leaf_hash WHERE idx = 3", [])
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                built.owner("TRUNCATE checkpoints", [])
        finally:
            owner_db.execute("RESET session_replication_role")
        assert built.verify().ok
    finally:
        built.close()
