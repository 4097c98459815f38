"""``audit-sink history | sharing-guard what-if`` over a real audit trail, one account erased.

The trail is built as the guard and the sink build it, without Kafka: a history of
governance changes and transfers is decided by the engine (``replay``'s), each decision and
change becomes the guard's audit record (``sharing_guard.audit_trail.audit_record``),
encoded as on the wire, and appended through the sink's writer (a single log on SQLite and
PostgreSQL; a sharded trail on SQLite). Then ``audit-sink erase`` crypto-shreds one account.

The candidate policy raises the child age limit to 16 and adds DE to the appropriate
jurisdictions. Known flips: two 14- and 15-year-olds' transfers to a processor (ALLOW ->
BLOCK CHILD_DATA) and a disclosure under a German order (BLOCK ORDER_JURISDICTION -> ALLOW
ORDER). The erased account also had a 14-year-old's transfer: sealed in the trail, it must be
reported as not re-decided, and its id must appear nowhere.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import zlib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from audit_sink import bootstrap
from audit_sink import cli as sink_cli
from audit_sink.plan import ConsumedRecord
from audit_sink.settings import AuditSinkSettings
from builders import approve, consent, le_transfer, order, register, transfer
from sharing_guard import cli as guard_cli
from sharing_guard.audit_trail import audit_record
from sharing_guard.codec import contract_registry
from sharing_guard.contract import (
    ConsentStatus,
    Decision,
    Event,
    Purpose,
    RecipientType,
    TransferRequested,
)
from sharing_guard.contract.policy_events import PolicyPromoted
from sharing_guard.core.ledger import GovernanceState, step
from sharing_guard.policy_file import load_policy
from test_audit_support import (
    next_positions,
    pg_backend,
    pg_names,  # noqa: F401
    unique_origin,
)

TOPIC = "governance.audit"
ERASED = "acc-ERASED-0042"
KEPT = ("acc-kept-1", "acc-kept-2")
POLICY = load_policy()


def _history() -> list[Event]:
    """Processing order; every event occurs after the one before it (minute ``n``)."""
    events: list[Event] = [
        register("rcp-1", RecipientType.SUBCONTRACTOR, (Purpose.DATA_ANALYSIS,), minutes=0),
        consent(ConsentStatus.GRANTED, account=ERASED, minutes=1),
        consent(ConsentStatus.GRANTED, account=KEPT[0], minutes=2),
        order("ord-de", jurisdiction="DE", max_disclosures=1, accounts=(KEPT[0],), minutes=3),
        approve("ord-de", minutes=4),
        transfer(event_id="kept-14", account=KEPT[0], subject_age=14, minutes=5),
        transfer(event_id="kept-15", account=KEPT[1], subject_age=15, minutes=6),
        transfer(event_id="kept-30", account=KEPT[0], subject_age=30, minutes=7),
        transfer(event_id="erased-14", account=ERASED, subject_age=14, minutes=8),
        transfer(event_id="erased-40", account=ERASED, subject_age=40, minutes=9),
        transfer(event_id="kept-10", account=KEPT[1], subject_age=10, minutes=10),
        le_transfer("ord-de", event_id="disclosure-de", account=KEPT[0], minutes=11),
        transfer(
            event_id="kept-promo", account=KEPT[0], purpose=Purpose.PROMOTIONAL_OFFERS, minutes=12
        ),
    ]
    return events


HISTORY = _history()


PROMOTION = PolicyPromoted(
    event_id="promotion-1",
    occurred_at=HISTORY[6].occurred_at,
    policy_name=POLICY.name,
    version=POLICY.version,
    document=(resources.files("sharing_guard") / "policy.toml").read_text(encoding="utf-8"),
    promoted_by="officer.ada",
    what_if="{}",
)
"""The bundled policy promoted midway: audited, but not an event replay reads."""


def audit_values(events: list[Event]) -> list[tuple[str, bytes]]:
    """Each event's audit record as the guard publishes it, with its event id; the policy
    promotion's record after the sixth."""
    registry = contract_registry()
    state = GovernanceState()
    values = []
    for n, event in enumerate(events):
        result = step(state, event, POLICY)
        state = result.state
        decision: Decision | None = result.decision
        record = audit_record(event, decision if isinstance(event, TransferRequested) else None)
        values.append((event.event_id, registry.encode(record)))
        if n == 5:
            values.append((PROMOTION.event_id, registry.encode(audit_record(PROMOTION))))
    return values


def candidate_policy(path: Path) -> Path:
    text = (resources.files("sharing_guard") / "policy.toml").read_text(encoding="utf-8")
    text = text.replace("child_age_limit = 13", "child_age_limit = 16")
    text = text.replace(
        'appropriate_jurisdictions = ["CH"]', 'appropriate_jurisdictions = ["CH", "DE"]'
    )
    path.write_text(text, encoding="utf-8")
    return path


def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **extra: str) -> None:
    """A fresh origin, data directory, index key and signing key in ``AUDIT_SINK_*``."""
    monkeypatch.setenv("AUDIT_SINK_ORIGIN", unique_origin())
    monkeypatch.setenv("AUDIT_SINK_DATA_DIR", str(tmp_path / "sink"))
    monkeypatch.setenv("AUDIT_SINK_INDEX_KEY", base64.b64encode(os.urandom(32)).decode())
    for name, value in extra.items():
        monkeypatch.setenv(f"AUDIT_SINK_{name}", value)
    assert sink_cli.main(["keygen"]) == 0


def build_single(settings: AuditSinkSettings, values: list[tuple[str, bytes]]) -> None:
    """The records appended to one log, in three batches, as the ingest appends them."""
    store, keys = bootstrap.open_store(settings), bootstrap.open_keystore(settings)
    try:
        log = bootstrap.build_log(settings, store, keys)
        for start in range(0, len(values), 5):
            batch = [
                ConsumedRecord(TOPIC, 0, offset, value)
                for offset, (_, value) in enumerate(values[start : start + 5], start=start)
            ]
            log.append_batch(batch, next_positions(batch))
    finally:
        store.close()
        keys.close()


def build_sharded(settings: AuditSinkSettings, values: list[tuple[str, bytes]]) -> None:
    """The records spread over three partitions by event id (as the guard keys them)."""
    offsets = [0, 0, 0]
    batch = []
    for event_id, value in values:
        partition = zlib.crc32(event_id.encode()) % 3
        batch.append(ConsumedRecord(TOPIC, partition, offsets[partition], value))
        offsets[partition] += 1
    assert all(offsets), "every shard holds records"
    keys = bootstrap.open_keystore(settings)
    writer = bootstrap.build_trail_writer(settings, keys)
    try:
        writer.append_batch(batch, next_positions(batch))
    finally:
        writer.close()
        keys.close()


def sink(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = sink_cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def what_if(
    capsys: pytest.CaptureFixture[str], candidate: Path, history_file: Path, *extra: str
) -> tuple[int, str, str]:
    status = guard_cli.main(["what-if", "--policy", str(candidate), *extra, str(history_file)])
    out, err = capsys.readouterr()
    return status, out, err


def check_report(report: dict[str, Any]) -> None:
    """The erased account's decisions not re-decided, the known flips found, nothing else."""
    totals = report["totals"]
    assert totals["sealed_decisions"] == 2  # erased-14, erased-40
    assert totals["sealed_governance_changes"] == 1  # its consent
    assert report["sealed_reasons"] == {"erased": 3}
    assert totals["transfers"] == 6  # every other transfer, re-decided
    assert totals["invalid_lines"] == totals["not_reproduced"] == 0
    assert report["old_side"]["recorded"] == 6
    assert report["old_side"]["recorded_policy_versions"] == {POLICY.version: 6}
    changes = {
        (
            g["from"]["outcome"],
            tuple(g["from"]["codes"]),
            g["to"]["outcome"],
            tuple(g["to"]["codes"]),
        ): (g["examples"], g["rules"])
        for g in report["changes"]
    }
    assert changes == {
        ("ALLOW", ("PROCESSOR",), "BLOCK", ("CHILD_DATA",)): (
            ["kept-14", "kept-15"],
            ["child_age_limit: 13 -> 16"],
        ),
        ("BLOCK", ("ORDER_JURISDICTION",), "ALLOW", ("ORDER",)): (
            ["disclosure-de"],
            ["appropriate_jurisdictions: + DE"],
        ),
    }
    assert totals["changed"] == 3


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def single_trail(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AuditSinkSettings:
    """A single-log trail of the history, on each store, with the account erased."""
    extra: dict[str, str] = {}
    if request.param == "postgres":
        names, owner_db = request.getfixturevalue("pg_names")
        dsn = request.getfixturevalue("pg_dsn")
        pg_backend(dsn, tmp_path, names, owner_db)  # the schemas and roles
        extra = {
            "BACKEND": "postgres",
            "POSTGRES__DSN": dsn,
            "POSTGRES__SCHEMA_NAME": names.schema,
            "POSTGRES__ROLE": names.writer,
            "POSTGRES__READER_ROLE": names.reader,
            "POSTGRES__KEYS_SCHEMA": names.keys_schema,
            "POSTGRES__KEYS_ROLE": names.key_role,
        }
    configure(monkeypatch, tmp_path, **extra)
    settings = AuditSinkSettings()
    build_single(settings, audit_values(HISTORY))
    assert sink_cli.main(["erase", ERASED]) == 0
    return settings


def test_history_then_what_if_skips_the_erased_account_and_finds_the_flips(
    single_trail: AuditSinkSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    status, lines, err = sink(capsys, "history")

    assert status == 0
    assert err == (
        "history: 13 lines from 1 member log(s): 6 decisions, 4 governance changes, 3 sealed "
        "placeholders (2 decisions, 1 governance changes); skipped: records of other events "
        "(policy promotions) 1, erasure entries 1\n"
    )
    history_file = tmp_path / "history.jsonl"
    history_file.write_text(lines, encoding="utf-8")
    parsed = [json.loads(text) for text in lines.splitlines()]
    assert [p["event_id"] for p in parsed] == [e.event_id for e in HISTORY]  # guard's order
    sealed = [p for p in parsed if p["type"] == "Sealed"]
    assert {p["event_id"] for p in sealed} == {HISTORY[1].event_id, "erased-14", "erased-40"}
    assert all(set(p) <= {"type", "event_id", "event_type", "reason", "recorded"} for p in sealed)

    status, out, err = what_if(
        capsys, candidate_policy(tmp_path / "candidate.toml"), history_file, "--format", "json"
    )

    assert (status, err) == (1, "")
    check_report(json.loads(out))
    _, text, _ = what_if(capsys, tmp_path / "candidate.toml", history_file)
    assert "  2 decisions of erased accounts not re-decided, 1 governance change" in text
    for output in (lines, out, text):
        assert ERASED not in output
        assert "ERASED" not in output


@pytest.mark.parametrize("single_trail", ["sqlite"], indirect=True)
def test_the_real_pipeline_through_a_pipe(single_trail: AuditSinkSettings, tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    candidate = candidate_policy(tmp_path / "candidate.toml")

    done = subprocess.run(
        f"{bin_dir / 'audit-sink'} history | "
        f"{bin_dir / 'sharing-guard'} what-if --policy {candidate} --format json -; "
        'echo "status=${PIPESTATUS[0]},${PIPESTATUS[1]}" >&2',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
        check=False,
    )

    assert done.stderr.splitlines()[-1] == "status=0,1", done.stderr
    check_report(json.loads(done.stdout))
    assert ERASED not in done.stdout + done.stderr


def test_a_sharded_trail_gives_the_same_history_in_occurrence_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(monkeypatch, tmp_path, SHARDING="partition")
    settings = AuditSinkSettings()
    build_sharded(settings, audit_values(HISTORY))
    assert sink_cli.main(["erase", ERASED]) == 0
    capsys.readouterr()

    status, lines, err = sink(capsys, "history")

    assert status == 0
    assert "from 3 member log(s)" in err
    parsed = [json.loads(text) for text in lines.splitlines()]
    # Every event occurred after the one before it: the merge gives back the guard's order.
    assert [p["event_id"] for p in parsed] == [e.event_id for e in HISTORY]
    history_file = tmp_path / "history.jsonl"
    history_file.write_text(lines, encoding="utf-8")
    status, out, _ = what_if(
        capsys, candidate_policy(tmp_path / "candidate.toml"), history_file, "--format", "json"
    )
    assert status == 1
    check_report(json.loads(out))
    assert ERASED not in lines + out


@pytest.mark.parametrize("single_trail", ["sqlite"], indirect=True)  # SQL tampering
def test_an_entry_that_does_not_open_without_an_erasure_is_unavailable_not_erased(
    single_trail: AuditSinkSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    db = sqlite3.connect(single_trail.log_file(), isolation_level=None)
    try:
        for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            db.execute(f"DROP TRIGGER {trigger}")
        (index,) = db.execute(
            "SELECT idx FROM records WHERE audit_id = 'DECISION:kept-30'"
        ).fetchone()
        db.execute("DELETE FROM payloads WHERE idx = ?", (index,))  # no erasure entry lists it
    finally:
        db.close()
    capsys.readouterr()

    status, lines, err = sink(capsys, "history")

    assert status == 0
    assert "4 sealed placeholders (3 decisions, 1 governance changes, 1 unavailable: run " in err
    [placeholder] = [json.loads(t) for t in lines.splitlines() if '"kept-30"' in t]
    assert {k: placeholder[k] for k in ("type", "reason")} == {
        "type": "Sealed",
        "reason": "unavailable",
    }
    history_file = tmp_path / "history.jsonl"
    history_file.write_text(lines, encoding="utf-8")
    status, out, _ = what_if(capsys, candidate_policy(tmp_path / "candidate.toml"), history_file)
    assert status == 1
    assert "3 decisions sealed in the trail not re-decided" in out
    assert "(erased 3, unavailable 1)" in out
