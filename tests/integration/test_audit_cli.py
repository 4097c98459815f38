"""The ``audit-sink`` commands end to end, configured only through ``AUDIT_SINK_*`` variables.

The export's standalone verifier runs in a subprocess (``python -I``) in which importing
``audit_sink`` or ``sharing_guard`` fails, to prove it needs neither.
"""

from __future__ import annotations

import csv
import io
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from audit_sink import bootstrap, cli
from audit_sink.checkpoint import NoteVerifier
from audit_sink.leaf import decode_leaf
from audit_sink.proof_bundle import open_proof_bundle, parse_proof_bundle
from audit_sink.settings import AuditSinkSettings
from test_audit_support import (
    append_decision_batches,
    pg_backend,
    pg_names,  # noqa: F401
    unique_origin,
    verify_export,
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def configured(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> AuditSinkSettings:
    """An environment with a fresh origin, keys, and twelve records (three batches)."""
    monkeypatch.setenv("AUDIT_SINK_ORIGIN", unique_origin())
    monkeypatch.setenv("AUDIT_SINK_DATA_DIR", str(tmp_path / "sink"))
    if request.param == "postgres":
        names, owner_db = request.getfixturevalue("pg_names")
        dsn = request.getfixturevalue("pg_dsn")
        pg_backend(dsn, tmp_path, names, owner_db)  # creates the schemas and roles
        monkeypatch.setenv("AUDIT_SINK_BACKEND", "postgres")
        monkeypatch.setenv("AUDIT_SINK_POSTGRES__DSN", dsn)
        monkeypatch.setenv("AUDIT_SINK_POSTGRES__SCHEMA_NAME", names.schema)
        monkeypatch.setenv("AUDIT_SINK_POSTGRES__ROLE", names.writer)
        monkeypatch.setenv("AUDIT_SINK_POSTGRES__READER_ROLE", names.reader)
        monkeypatch.setenv("AUDIT_SINK_POSTGRES__KEYS_SCHEMA", names.keys_schema)
        monkeypatch.setenv("AUDIT_SINK_POSTGRES__KEYS_ROLE", names.key_role)
    status, index_key, _ = run(capsys, "keygen", "--index-key")
    assert status == 0
    monkeypatch.setenv("AUDIT_SINK_INDEX_KEY", index_key.strip())
    status, vkey, _ = run(capsys, "keygen")
    assert status == 0
    monkeypatch.setenv("AUDIT_SINK_VKEY", vkey.strip())
    settings = AuditSinkSettings()
    store, keys = bootstrap.open_store(settings), bootstrap.open_keystore(settings)
    try:
        append_decision_batches(bootstrap.build_log(settings, store, keys))
    finally:
        store.close()
        keys.close()
    return settings


def tamper_sqlite(settings: AuditSinkSettings, sql: str, *params: Any) -> None:
    import sqlite3

    db = sqlite3.connect(settings.log_file(), isolation_level=None)
    try:
        for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            db.execute(f"DROP TRIGGER {trigger}")
        db.execute(sql, params)
    finally:
        db.close()


def test_keygen_writes_a_private_seed_and_prints_its_vkey(
    configured: AuditSinkSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    path = configured.signing_key_path()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert bootstrap.signer(configured).verifier().vkey == configured.vkey
    status, _, err = run(capsys, "keygen")
    assert status == 2
    assert "already exists" in err


def test_verify_passes_on_an_intact_log(
    configured: AuditSinkSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "verify")
    assert status == 0
    assert out.startswith("OK: 12 entries intact, 0 erased")

    status, out, _ = run(capsys, "verify", "--json")
    report = json.loads(out)
    assert (status, report["ok"], report["size"], report["checkpoints_verified"]) == (
        0,
        True,
        12,
        3,
    )


def test_verify_needs_a_pinned_key(
    configured: AuditSinkSettings, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.delenv("AUDIT_SINK_VKEY")

    status, _, err = run(capsys, "verify")

    assert status == 2
    assert "pin the log's public key" in err


@pytest.mark.parametrize("configured", ["sqlite"], indirect=True)  # SQL tampering
def test_verify_names_the_first_bad_entry(
    configured: AuditSinkSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper_sqlite(configured, "UPDATE leaves SET leaf_hash = zeroblob(32) WHERE idx = 6")

    status, out, _ = run(capsys, "verify")

    assert status == 1
    assert out.startswith("FAIL: first bad entry 6: entry 6: the stored leaf hash")


@pytest.mark.parametrize("configured", ["sqlite"], indirect=True)  # SQL tampering
def test_verify_against_the_archive_catches_a_truncation(
    configured: AuditSinkSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    for sql in (
        "DELETE FROM payloads WHERE idx >= 8",
        "DELETE FROM records WHERE idx >= 8",
        "DELETE FROM sources WHERE idx >= 8",
        "DELETE FROM leaves WHERE idx >= 8",
        "DELETE FROM checkpoints WHERE size > 8",
    ):
        tamper_sqlite(configured, sql)

    assert run(capsys, "verify")[0] == 0
    status, out, _ = run(capsys, "verify", "--trusted-checkpoint", str(configured.archive_dir()))

    assert status == 1
    assert out.startswith("FAIL: first bad entry 8:")


def test_proof_gives_a_bundle_checkable_offline(
    configured: AuditSinkSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    status, bundle, _ = run(capsys, "proof", "evt-000005")

    assert status == 0
    leaf = parse_proof_bundle(bundle).extra
    assert leaf is not None
    verifier = NoteVerifier.from_vkey(configured.vkey or "")
    proven = open_proof_bundle(bundle, leaf, [verifier], configured.require_origin())
    assert (proven.index, proven.checkpoint.size) == (5, 12)
    assert decode_leaf(leaf).body["event_id"] == "evt-000005"
    status, _, err = run(capsys, "proof", "evt-999999")
    assert status == 1
    assert "no record" in err


def test_an_export_verifies_offline_and_a_tampered_one_does_not(
    configured: AuditSinkSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    export = tmp_path / "export"
    status, _, _ = run(capsys, "export", str(export), "--include-payloads")
    assert status == 0
    vkey = configured.vkey or ""

    good = verify_export(export, "--vkey", vkey)
    assert (good.returncode, good.stdout.strip()) == (0, "OK: 12 entries intact, 0 erased")

    leaves = bytearray((export / "leaves.bin").read_bytes())
    offset = 0
    for _ in range(5):  # skip entries 0-4: uint64 index, uint32 length, leaf
        offset += 12 + int.from_bytes(leaves[offset + 8 : offset + 12], "big")
    end = offset + 12 + int.from_bytes(leaves[offset + 8 : offset + 12], "big")
    leaves[end - 3] ^= 0x01  # a byte of entry 5's body
    (export / "leaves.bin").write_bytes(bytes(leaves))
    bad = verify_export(export, "--vkey", vkey)
    assert bad.returncode == 1
    assert bad.stdout.startswith("FAIL: first bad entry 5:")


def test_an_exported_payload_changed_is_caught(
    configured: AuditSinkSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    export = tmp_path / "export"
    run(capsys, "export", str(export), "--include-payloads")
    payloads = bytearray((export / "payloads.bin").read_bytes())
    payloads[-1] ^= 0x01  # the last payload: entry 11's
    (export / "payloads.bin").write_bytes(bytes(payloads))

    result = verify_export(export, "--vkey", configured.vkey or "")

    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: first bad entry 11:")


def test_the_standalone_verifier_rejects_another_key(
    configured: AuditSinkSettings, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from audit_sink.checkpoint import NoteSigner

    export = tmp_path / "export"
    run(capsys, "export", str(export))
    stranger = NoteSigner.generate(configured.require_origin()).verifier().vkey

    result = verify_export(export, "--vkey", stranger)

    assert result.returncode == 1
    assert "not signed by the pinned key" in result.stdout


def test_query_filters_and_formats(
    configured: AuditSinkSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "query", "--account", "acct-1", "--format", "jsonl")
    rows = [json.loads(line) for line in out.splitlines()]
    assert status == 0
    assert [r["index"] for r in rows] == [1, 4, 7, 10]
    assert {r["account_id"] for r in rows} == {"acct-1"}
    assert json.loads(rows[0]["event_json"])["account_id"] == "acct-1"

    _, out, _ = run(capsys, "query", "--outcome", "ALLOW", "--reason", "CONSENT", "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert [r["event_id"] for r in parsed] == [f"evt-{n:06d}" for n in (1, 3, 5, 7, 9, 11)]

    _, out, _ = run(capsys, "query", "--reason", "CONSENT_MISSING", "--format", "jsonl")
    assert len(out.splitlines()) == 6
    _, out, _ = run(capsys, "query", "--recipient", "rcp-0", "--order-ref", "ord-7")
    assert out.splitlines()[1:] == []
    _, out, _ = run(capsys, "query", "--order-ref", "ord-7")
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["7"]
    _, out, _ = run(
        capsys,
        "query",
        "--from",
        "2026-11-01T12:03:00Z",
        "--to",
        "2026-11-01T12:05:00Z",
        "--format",
        "jsonl",
    )
    assert [json.loads(line)["index"] for line in out.splitlines()] == [3, 4]
    status, _, err = run(capsys, "query", "--from", "2026-11-01T12:03:00")
    assert status == 2
    assert "time zone" in err


def test_erase_from_stdin_then_verify_and_query(
    configured: AuditSinkSettings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("acct-2\n"))

    status, out, _ = run(capsys, "erase", "-")

    assert status == 0
    assert out.strip() == (
        "erased 4 entries (erasure entry 12), destroyed 1 key(s), deleted 4 ciphertext(s)"
    )
    assert "acct-2" not in out
    status, out, _ = run(capsys, "verify")
    assert status == 0
    assert out.startswith("OK: 13 entries intact, 4 erased under erasure entries")
    _, out, _ = run(capsys, "query", "--format", "jsonl")
    erased = [json.loads(line) for line in out.splitlines() if "<erased>" in line]
    assert [r["index"] for r in erased] == [2, 5, 8, 11]
    assert all(r["personal"] == "erased" for r in erased)


def test_serve_is_not_there_yet_and_pg_schema_prints_ddl(
    configured: AuditSinkSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "serve")[0] == 2
    status, out, _ = run(capsys, "pg-schema", "--writer-role", "w", "--reader-role", "r")
    assert status == 0
    assert "ENABLE ALWAYS TRIGGER leaves_no_update" in out
    assert f'GRANT SELECT, INSERT ON "{configured.postgres.schema_name}".meta' in out


def test_pg_schema_with_shards_prints_every_shard_and_the_heads_or_nothing_on_a_bad_name(
    configured: AuditSinkSettings,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = configured.postgres.schema_name
    status, out, _ = run(capsys, "pg-schema", "--shards", "3", "--writer-role", "w")
    assert status == 0
    for schema in (f"{base}_shard_0", f"{base}_shard_1", f"{base}_shard_2", f"{base}_heads"):
        assert f'GRANT SELECT, INSERT ON "{schema}".' in out, schema
    assert f'"{base}_shard_3"' not in out
    assert "ENABLE ALWAYS TRIGGER heads_no_update" in out

    monkeypatch.setenv("AUDIT_SINK_POSTGRES__SCHEMA_NAME", "audit-log")  # not an identifier
    status, out, err = run(capsys, "pg-schema", "--shards", "2")
    assert (status, out) == (2, "")
    assert "not a plain lower-case SQL identifier: 'audit-log'" in err
