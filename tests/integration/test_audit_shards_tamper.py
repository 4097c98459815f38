"""Tampering with a sharded trail, on both stores: ``verify`` names the shard and the index.

The trail (``AUDIT_SINK_SHARDING=partition``) is built with real appends through
``bootstrap.build_trail_writer``: four batches of twelve sample records spread over three
partitions, so each shard holds 16 entries (0-15) with signed checkpoints at 4, 8, 12 and 16,
and twelve heads notes were published (one after each shard checkpoint), all archived
outside the database. The attacker has the owner's rights (SQLite: the files; PostgreSQL:
the schema owner) and disables the triggers in the way, as in test_audit_tamper.
"""

from __future__ import annotations

import base64
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from audit_sink import bootstrap, cli
from audit_sink.checkpoint import NoteVerifier
from audit_sink.heads import heads_origin, open_heads, shard_origin, sign_heads
from audit_sink.plan import ConsumedRecord
from audit_sink.samples import sample_records
from audit_sink.settings import AuditSinkSettings
from audit_sink.signing import create_signing_key
from audit_sink.trail_verify import MemberReport, TrailReport, verify_trail
from audit_sink.verify import ProblemCode
from sharing_guard.codec import contract_registry
from test_audit_support import (
    install_sharded_pg,
    next_positions,
    pg_names,  # noqa: F401
    unique_origin,
)

TOPIC = "governance.audit"
SHARDS = 3
BATCHES = 4
PER_SHARD_BATCH = 4
SIZE = BATCHES * PER_SHARD_BATCH  # entries per shard
HEADS_NOTES = BATCHES * SHARDS


@dataclass
class Trail:
    """A sharded trail configured through the environment, and the owner's tools on it."""

    settings: AuditSinkSettings
    pinned: NoteVerifier
    owner: Callable[[int | None, str, Sequence[Any]], list[tuple[Any, ...]]]
    """SQL with the owner's rights on a shard (``None``: on the heads notes)."""
    disable: Callable[[int | None, str], None]
    drop: Callable[[int | None], None]
    """Delete a shard's store (``None``: the heads notes' store)."""

    def sql(self, shard: int | None, query: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.owner(shard, query, params)

    def verify(self, trusted: Sequence[str] = (), workers: int = 1) -> TrailReport:
        return verify_trail(self.settings, self.pinned, trusted, workers=workers)

    def archived(self) -> list[str]:
        """Every note of the archive (what ``--trusted-checkpoint DIR`` reads)."""
        return [p.read_text("utf-8") for p in sorted(self.settings.archive_dir().rglob("*.note"))]


def build(settings: AuditSinkSettings) -> None:
    """Append the four batches through the trail writer."""
    registry = contract_registry()
    values = [registry.encode(r) for r in sample_records(BATCHES * SHARDS * PER_SHARD_BATCH, 7)]
    keys = bootstrap.open_keystore(settings)
    writer = bootstrap.build_trail_writer(settings, keys)
    try:
        per_batch = SHARDS * PER_SHARD_BATCH
        for b in range(BATCHES):
            batch = [
                ConsumedRecord(TOPIC, i % SHARDS, b * PER_SHARD_BATCH + i // SHARDS, value)
                for i, value in enumerate(values[b * per_batch : (b + 1) * per_batch])
            ]
            writer.append_batch(batch, next_positions(batch))
    finally:
        writer.close()
        keys.close()


def _sqlite_tools(settings: AuditSinkSettings) -> tuple[Any, Any, Any]:
    def path(shard: int | None) -> Path:
        return settings.heads_file() if shard is None else settings.shard_log_file(shard)

    def owner(shard: int | None, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(path(shard), isolation_level=None)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def disable(shard: int | None, table: str) -> None:
        for (trigger,) in owner(
            shard, "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", [table]
        ):
            owner(shard, f"DROP TRIGGER {trigger}", [])

    def drop(shard: int | None) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path(shard)}{suffix}").unlink(missing_ok=True)

    return owner, disable, drop


def _pg_tools(settings: AuditSinkSettings, owner_db: Any) -> tuple[Any, Any, Any]:
    def schema(shard: int | None) -> str:
        return settings.heads_schema() if shard is None else settings.shard_schema(shard)

    def owner(shard: int | None, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with owner_db.transaction():
            owner_db.execute(f'SET LOCAL search_path TO "{schema(shard)}"')
            cursor = owner_db.execute(sql.replace("?", "%s"), params or None)
            return cursor.fetchall() if cursor.description else []

    def disable(shard: int | None, table: str) -> None:
        owner(shard, f"ALTER TABLE {table} DISABLE TRIGGER USER", [])

    def drop(shard: int | None) -> None:
        owner_db.execute(f'DROP SCHEMA "{schema(shard)}" CASCADE')

    return owner, disable, drop


def install_pg(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Roles, the log and key schemas, then the shard and heads schemas as ``pg-schema
    --shards 3`` prints them; the environment pointed at them. Returns the owner connection."""
    return install_sharded_pg(request, tmp_path, monkeypatch, SHARDS)


def configure(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    sharding: str,
) -> tuple[AuditSinkSettings, NoteVerifier, Any]:
    """The ``AUDIT_SINK_*`` environment of a fresh trail (in this process); the PostgreSQL
    owner connection (``None`` on SQLite)."""
    for name in [n for n in os.environ if n.startswith("AUDIT_SINK_")]:
        monkeypatch.delenv(name)
    origin = unique_origin()
    signer = create_signing_key(tmp_path / "signing.key", origin)
    env = {
        "ORIGIN": origin,
        "SHARDING": sharding,
        "HEADS_EVERY_S": "0",  # a heads note after every shard checkpoint: one per batch
        "DATA_DIR": str(tmp_path / "sink"),
        "SIGNING_KEY_FILE": str(tmp_path / "signing.key"),
        "INDEX_KEY": base64.b64encode(os.urandom(32)).decode("ascii"),
        "VKEY": signer.verifier().vkey,
        "CHECKPOINT_DIR": str(tmp_path / "archive"),
        "VERIFY_CHUNK": "5",  # chunks smaller than a shard: their boundaries are crossed
        "METRICS_PORT": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(f"AUDIT_SINK_{name}", value)
    owner_db = install_pg(request, tmp_path, monkeypatch) if backend == "postgres" else None
    return AuditSinkSettings(), signer.verifier(), owner_db


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def trail(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Trail:
    """The built trail of the module doc, verified intact."""
    settings, pinned, owner_db = configure(
        request, tmp_path, monkeypatch, request.param, "partition"
    )
    build(settings)
    tools = _sqlite_tools(settings) if owner_db is None else _pg_tools(settings, owner_db)
    built = Trail(settings, pinned, *tools)
    report = built.verify()
    assert report.ok, report.to_dict()
    assert [(m.member.partition, m.report.size) for m in report.members] == [
        (p, SIZE) for p in range(SHARDS)
    ]
    assert report.heads_verified == HEADS_NOTES
    return built


def only_bad_member(report: TrailReport, shard: int) -> MemberReport:
    """The member report of ``shard``, checked to be the only one with problems."""
    assert not report.ok
    assert report.problems == ()
    bad = [m for m in report.members if not m.report.ok]
    assert [(m.member.label, m.member.partition) for m in bad] == [(f"shard {shard}", shard)]
    return bad[0]


def first_of(report: TrailReport, shard: int) -> tuple[int | None, ProblemCode]:
    member = only_bad_member(report, shard)
    found = report.first()
    assert found is not None
    label, problem = found
    assert label == f"shard {shard}"
    assert problem is member.report.first
    assert member.report.first is not None
    return member.report.first.index, member.report.first.code


def leaf_at(trail: Trail, shard: int, index: int) -> tuple[bytes, bytes]:
    rows = trail.sql(shard, "SELECT leaf, leaf_hash FROM leaves WHERE idx = ?", index)
    return bytes(rows[0][0]), bytes(rows[0][1])


def set_leaf(trail: Trail, shard: int, index: int, leaf: bytes, stored_hash: bytes) -> None:
    trail.sql(
        shard, "UPDATE leaves SET leaf = ?, leaf_hash = ? WHERE idx = ?", leaf, stored_hash, index
    )


def roll_back_shard(trail: Trail, shard: int, keep: int) -> None:
    """Remove the entries from ``keep`` on and the checkpoints above it: a clean rollback."""
    for table in ("leaves", "payloads", "records", "sources", "checkpoints"):
        trail.disable(shard, table)
    for table in ("payloads", "records", "sources"):
        trail.sql(shard, f"DELETE FROM {table} WHERE idx >= ?", keep)
    trail.sql(shard, "DELETE FROM leaves WHERE idx >= ?", keep)
    trail.sql(shard, "DELETE FROM checkpoints WHERE size > ?", keep)


def roll_back_heads(trail: Trail, keep: int) -> None:
    """Remove every heads note after note ``keep``."""
    trail.disable(None, "heads")
    trail.sql(None, "DELETE FROM heads WHERE seq > ?", keep)


def heads_listing(trail: Trail, shard: int, size: int) -> int:
    """The sequence number of the last heads note that lists ``shard`` at most at ``size``
    (and every other shard at all, so that no member is dropped)."""
    origin = trail.settings.require_origin()
    rows = trail.sql(None, "SELECT seq, note FROM heads ORDER BY seq")
    fitting = [
        int(seq)
        for seq, note in rows
        if len(heads := open_heads(str(note), trail.pinned, origin).by_origin()) == SHARDS
        and heads[shard_origin(origin, shard)].size <= size
    ]
    return fitting[-1]


# -- edits of one shard's entries -----------------------------------------------------------


def test_an_intact_trail_verifies_with_and_without_its_archive(trail: Trail) -> None:
    archived = trail.archived()
    assert len(archived) == SHARDS * BATCHES + HEADS_NOTES

    for report in (trail.verify(archived), trail.verify(archived, workers=SHARDS)):
        assert report.ok, report.to_dict()
        assert report.size == SHARDS * SIZE
        assert report.latest_heads == HEADS_NOTES
        for member in report.members:
            assert member.report.trusted_sizes  # the heads and the archived checkpoints


def test_a_changed_leaf_is_pinned_to_its_shard_and_entry(trail: Trail) -> None:
    trail.disable(1, "leaves")
    leaf, stored_hash = leaf_at(trail, 1, 5)
    set_leaf(trail, 1, 5, leaf[:-2] + bytes([leaf[-2] ^ 1]) + leaf[-1:], stored_hash)

    assert first_of(trail.verify(), 1) == (5, ProblemCode.LEAF_HASH_MISMATCH)


def test_a_changed_leaf_with_its_hash_recomputed_is_pinned_by_the_chain(trail: Trail) -> None:
    from audit_sink.merkle import leaf_hash

    trail.disable(2, "leaves")
    leaf, _ = leaf_at(trail, 2, 9)
    forged = leaf[:-2] + bytes([leaf[-2] ^ 1]) + leaf[-1:]
    set_leaf(trail, 2, 9, forged, leaf_hash(forged))

    report = trail.verify()

    assert first_of(report, 2) == (9, ProblemCode.CHAIN_BREAK)
    assert ProblemCode.ROOT_MISMATCH in {p.code for p in report.members[2].report.problems}


def test_a_deleted_entry_is_pinned_to_its_shard_and_index(trail: Trail) -> None:
    for table in ("leaves", "payloads", "records", "sources"):
        trail.disable(0, table)
    for table in ("payloads", "records", "sources", "leaves"):
        trail.sql(0, f"DELETE FROM {table} WHERE idx = ?", 6)

    assert first_of(trail.verify(), 0) == (6, ProblemCode.MISSING_ENTRIES)


def test_two_swapped_entries_are_pinned_to_the_first(trail: Trail) -> None:
    trail.disable(1, "leaves")
    three, ten = leaf_at(trail, 1, 3), leaf_at(trail, 1, 10)
    set_leaf(trail, 1, 3, *ten)
    set_leaf(trail, 1, 10, *three)

    assert first_of(trail.verify(), 1) == (3, ProblemCode.MISPLACED_ENTRY)


def test_an_entry_moved_to_another_shard_is_caught_in_both(trail: Trail) -> None:
    trail.disable(0, "leaves")
    trail.disable(2, "leaves")
    zero, two = leaf_at(trail, 0, 7), leaf_at(trail, 2, 7)
    set_leaf(trail, 0, 7, *two)
    set_leaf(trail, 2, 7, *zero)

    report = trail.verify()

    assert not report.ok
    bad = {m.member.label: m.report.first for m in report.members if not m.report.ok}
    assert sorted(bad) == ["shard 0", "shard 2"]
    assert all(problem is not None and problem.index == 7 for problem in bad.values())


def test_a_truncated_tail_is_pinned_to_where_it_was_cut(trail: Trail) -> None:
    for table in ("leaves", "payloads", "records", "sources"):
        trail.disable(2, table)
    for table in ("payloads", "records", "sources", "leaves"):
        trail.sql(2, f"DELETE FROM {table} WHERE idx >= ?", 13)

    index, code = first_of(trail.verify(), 2)

    assert (index, code) == (13, ProblemCode.TRUNCATED)


# -- whole shards, rollbacks ----------------------------------------------------------------


def test_a_deleted_shard_is_a_missing_member(trail: Trail) -> None:
    trail.drop(1)

    report = trail.verify()

    assert not report.ok
    assert [(p.code, p.member) for p in report.problems] == [("member-missing", "shard 1")]
    assert [m.member.label for m in report.members] == ["shard 0", "shard 2"]
    assert all(m.report.ok for m in report.members)


def test_deleted_heads_notes_are_caught(trail: Trail) -> None:
    trail.drop(None)

    report = trail.verify()

    assert not report.ok
    assert [p.code for p in report.problems] == ["heads-invalid"]
    assert (report.heads_verified, report.latest_heads) == (0, None)


def test_a_rolled_back_shard_is_caught_by_the_heads_note(trail: Trail) -> None:
    roll_back_shard(trail, 1, keep=8)

    report = trail.verify()

    index, code = first_of(report, 1)
    assert (index, code) == (8, ProblemCode.FORK)
    assert report.members[1].report.first is not None
    assert report.members[1].report.first.checkpoint_size == SIZE
    assert report.members[1].report.size == 8


def test_a_rolled_back_shard_rewritten_to_its_old_size_is_a_fork(trail: Trail) -> None:
    """The tail replaced by as many other entries, signed with the key and archived (an
    insider with the key and the archive): the latest heads note still holds the shard."""
    roll_back_shard(trail, 0, keep=12)
    settings = trail.settings
    (settings.shard_archive_dir(0) / f"{SIZE}.note").unlink()  # or the writer refuses
    registry = contract_registry()
    keys = bootstrap.open_keystore(settings)
    store = bootstrap.open_store(settings, partition=0)
    try:
        log = bootstrap.build_log(settings, store, keys, 0)
        others = list(sample_records(200, 7))[-PER_SHARD_BATCH:]  # not yet in the trail
        batch = [
            ConsumedRecord(TOPIC, 0, 100 + i, registry.encode(r)) for i, r in enumerate(others)
        ]
        assert log.append_batch(batch, next_positions(batch)).checkpoint is not None
    finally:
        store.close()
        keys.close()

    report = trail.verify()

    member = only_bad_member(report, 0)
    assert member.report.size == SIZE
    assert {p.code for p in member.report.problems} == {ProblemCode.FORK}


def test_a_rolled_back_heads_table_is_caught_against_an_archived_heads_note(
    trail: Trail,
) -> None:
    archived = trail.archived()
    roll_back_heads(trail, keep=HEADS_NOTES - 4)

    alone = trail.verify()
    against = trail.verify(archived)

    assert alone.ok, "without a trusted heads note, dropping the latest notes is undetectable"
    assert alone.latest_heads == HEADS_NOTES - 4
    assert not against.ok
    assert [p.code for p in against.problems] == ["heads-rolled-back"]
    found = against.first()
    assert found is not None
    assert found[0] == "trail"


def test_a_shard_and_the_heads_rolled_back_together_are_caught_by_the_archive(
    trail: Trail,
) -> None:
    archived = trail.archived()
    keep_heads = heads_listing(trail, 2, size=8)
    roll_back_shard(trail, 2, keep=8)
    roll_back_heads(trail, keep=keep_heads)

    alone = trail.verify()
    against = trail.verify(archived)

    assert alone.ok, "a consistent rollback of a shard and the heads needs a trusted note"
    assert not against.ok
    assert "heads-rolled-back" in {p.code for p in against.problems}
    bad = [m for m in against.members if not m.report.ok]
    assert [m.member.label for m in bad] == ["shard 2"]
    assert bad[0].report.first is not None
    assert (bad[0].report.first.index, bad[0].report.first.code) == (8, ProblemCode.FORK)


def test_a_rewritten_heads_note_is_invalid(trail: Trail) -> None:
    trail.disable(None, "heads")
    seq, note = trail.sql(None, "SELECT seq, note FROM heads ORDER BY seq DESC LIMIT 1")[0]
    origin = trail.settings.require_origin()
    lines = str(note).split("\n")
    shard_line = next(i for i, line in enumerate(lines) if line.startswith(f"{origin}/shards/1 "))
    lines[shard_line] = lines[shard_line].replace(f" {SIZE} ", f" {SIZE - 4} ")
    trail.sql(None, "UPDATE heads SET note = ? WHERE seq = ?", "\n".join(lines), seq)

    report = trail.verify()

    assert not report.ok
    assert [p.code for p in report.problems] == ["heads-invalid"]
    assert report.heads_verified == HEADS_NOTES - 1


def test_a_shard_deleted_under_a_new_heads_note_without_it_is_a_regression(
    trail: Trail,
) -> None:
    """A key holder deletes shard 0 and publishes a heads note that no longer lists it."""
    origin = trail.settings.require_origin()
    trail.drop(0)
    store = bootstrap.open_heads_store(trail.settings)
    try:
        latest = store.latest()
        assert latest is not None
        kept = [
            h
            for h in open_heads(latest[1], trail.pinned, origin).heads
            if h.origin != shard_origin(origin, 0)
        ]
        signer = bootstrap.signer(trail.settings, heads_origin(origin))
        store.publish(lambda _: sign_heads(origin, kept, signer))
    finally:
        store.close()

    report = trail.verify()

    assert not report.ok
    assert report.latest_heads == HEADS_NOTES + 1
    assert [p.code for p in report.problems] == ["heads-regression"]
    assert f"{origin}/shards/0 is no longer listed" in report.problems[0].message
    assert all(m.report.ok for m in report.members)


# -- the command ----------------------------------------------------------------------------


def test_verify_command_names_the_shard_and_the_entry(
    trail: Trail, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["verify"]) == 0
    ok = capsys.readouterr().out
    assert ok.startswith(f"OK: {SHARDS * SIZE} entries intact in {SHARDS} shard(s); ")

    trail.disable(2, "leaves")
    leaf, stored_hash = leaf_at(trail, 2, 11)
    set_leaf(trail, 2, 11, leaf[:-2] + bytes([leaf[-2] ^ 1]) + leaf[-1:], stored_hash)

    assert cli.main(["verify"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL: first bad shard 2 entry 11: ")
    assert out.splitlines()[0].endswith("[leaf-hash-mismatch]")


def test_verify_command_names_a_deleted_shard(
    trail: Trail, capsys: pytest.CaptureFixture[str]
) -> None:
    trail.drop(0)

    status = cli.main(["verify", "--trusted-checkpoint", str(trail.settings.archive_dir())])

    out = capsys.readouterr().out
    assert status == 1
    assert out.startswith("FAIL: shard 0: ")
    assert out.splitlines()[0].endswith("[member-missing]")
