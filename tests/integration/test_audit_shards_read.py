"""The read side of a sharded trail, on both stores: query, proof, checkpoint, verify, erase,
export and report through the command line and the HTTP API.

The trail (``AUDIT_SINK_SHARDING=partition``) is built without Kafka, through
``bootstrap.build_trail_writer`` and ``TrailWriter.append_batch``, from records consumed
from three partitions of the audit topic:

* three batches of twelve sample records (``audit_sink.samples``), record ``i`` of a batch
  from partition ``i % 3``: each shard holds entries 0-11, signed at 4, 8 and 12;
* a fourth batch with the story of one law-enforcement order, spread over the shards:
  its registration (by ``officer-a``) and a consented transfer about the data subject in
  shard 0, its approval (by ``officer-b``) and a disclosure under it in shard 1, a
  disclosure and a refused request under it in shard 2. The story happened an hour
  before the samples' events although it was consumed after them: within each shard,
  time does not follow the index (as in a real partition).

Answers are compared with each shard's store read directly.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from audit_sink import bootstrap, cli
from audit_sink.checkpoint import NoteError, NoteVerifier
from audit_sink.heads import HeadsError, HeadsNote, member_verifier, open_heads, shard_origin
from audit_sink.http_api import create_app
from audit_sink.leaf import decode_leaf
from audit_sink.plan import ConsumedRecord
from audit_sink.proof_bundle import open_proof_bundle, parse_proof_bundle
from audit_sink.query import QueryCriteria, query_entries
from audit_sink.samples import sample_records
from audit_sink.settings import AuditSinkSettings
from audit_sink.signing import create_signing_key
from fastapi.testclient import TestClient
from sharing_guard.audit_trail import audit_record
from sharing_guard.codec import contract_registry
from sharing_guard.contract import (
    Clause,
    DataCategory,
    Decision,
    OrderApproved,
    OrderRegistered,
    OrderType,
    Outcome,
    Purpose,
    Reason,
    ReasonCode,
    Recipient,
    RecipientType,
    TransferRequested,
)
from sharing_guard.contract.audit import AuditRecord
from test_audit_support import (
    install_sharded_pg,
    next_positions,
    pg_names,  # noqa: F401
    unique_origin,
    verify_export,
)

TOPIC = "governance.audit"
SHARDS = 3
SAMPLE_BATCHES, PER_SHARD_BATCH = 3, 4
SAMPLES = SAMPLE_BATCHES * SHARDS * PER_SHARD_BATCH
SUBJECT = "acct-SUBJECT-1"
ORDER = "ord-shards-1"
AGENCY = "agency-1"
STORY_AT = datetime(2026, 11, 1, 7, 0, tzinfo=UTC)  # before the samples (from 08:00)
PERIOD = ["--from", "2026-11-01T00:00:00Z", "--to", "2026-11-02T00:00:00Z"]
TOKEN = "tok_" + base64.urlsafe_b64encode(os.urandom(30)).decode("ascii")


# -- the story of one order, over three shards ------------------------------------------------


def _transfer(event_id: str, minutes: int, outcome: Outcome, *, under_order: bool) -> AuditRecord:
    transfer = TransferRequested(
        event_id=event_id,
        occurred_at=STORY_AT + timedelta(minutes=minutes),
        source_service="legal-export" if under_order else "crm",
        account_id=SUBJECT,
        data_categories=(DataCategory.PERSONAL_INFORMATION,),
        recipient=Recipient(
            id=AGENCY if under_order else "rcp-crm",
            type=RecipientType.LAW_ENFORCEMENT if under_order else RecipientType.THIRD_PARTY,
            jurisdiction="CH",
        ),
        purpose=Purpose.LEGAL_ORDER if under_order else Purpose.CONSENTED_SHARING,
        order_ref=ORDER if under_order else None,
    )
    if under_order:
        code = ReasonCode.ORDER if outcome is Outcome.ALLOW else ReasonCode.ORDER_QUOTA_EXHAUSTED
        clause = Clause.LAW_ENFORCEMENT
    else:
        code, clause = ReasonCode.CONSENT, Clause.THIRD_PARTY_CONSENT
    decision = Decision(
        event_id=event_id,
        outcome=outcome,
        reasons=(Reason(code=code, clause=clause),),
        policy_version="2026.1",
        order_ref=ORDER if under_order else None,
    )
    return audit_record(transfer, decision)


def story() -> dict[int, list[AuditRecord]]:
    """The order's records by the partition they are consumed from."""
    registered = OrderRegistered(
        event_id="story-register",
        occurred_at=STORY_AT,
        order_ref=ORDER,
        order_type=OrderType.COURT_ORDER,
        authority="fedpol",
        jurisdiction="CH",
        recipient_id=AGENCY,
        account_ids=(SUBJECT,),
        data_categories=(DataCategory.PERSONAL_INFORMATION,),
        valid_from=STORY_AT,
        valid_until=STORY_AT + timedelta(days=30),
        registered_by="officer-a",
    )
    approved = OrderApproved(
        event_id="story-approve",
        occurred_at=STORY_AT + timedelta(minutes=1),
        order_ref=ORDER,
        approved_by="officer-b",
    )
    return {
        0: [
            audit_record(registered),
            _transfer("story-consented", 5, Outcome.ALLOW, under_order=False),
        ],
        1: [
            audit_record(approved),
            _transfer("story-disclosed-1", 2, Outcome.ALLOW, under_order=True),
        ],
        2: [
            _transfer("story-disclosed-2", 3, Outcome.ALLOW, under_order=True),
            _transfer("story-refused", 4, Outcome.BLOCK, under_order=True),
        ],
    }


def build(settings: AuditSinkSettings) -> None:
    """Append the four batches of the module doc through the trail writer."""
    registry = contract_registry()
    values = [registry.encode(r) for r in sample_records(SAMPLES, 3)]
    per_batch = SHARDS * PER_SHARD_BATCH
    batches = [
        [
            ConsumedRecord(TOPIC, i % SHARDS, b * PER_SHARD_BATCH + i // SHARDS, value)
            for i, value in enumerate(values[b * per_batch : (b + 1) * per_batch])
        ]
        for b in range(SAMPLE_BATCHES)
    ]
    batches.append(
        [
            ConsumedRecord(TOPIC, p, SAMPLE_BATCHES * PER_SHARD_BATCH + k, registry.encode(r))
            for p, records in story().items()
            for k, r in enumerate(records)
        ]
    )
    keys = bootstrap.open_keystore(settings)
    writer = bootstrap.build_trail_writer(settings, keys)
    try:
        for batch in batches:
            writer.append_batch(batch, next_positions(batch))
    finally:
        writer.close()
        keys.close()


# -- the trail under test -----------------------------------------------------------------------


@dataclass
class Trail:
    """A built sharded trail, configured through the environment, and the owner's SQL."""

    settings: AuditSinkSettings
    pinned: NoteVerifier
    owner: Callable[[int, str, Sequence[Any]], list[tuple[Any, ...]]]
    disable_triggers: Callable[[int, str], None]
    client: TestClient

    @property
    def origin(self) -> str:
        return self.settings.require_origin()

    def get(self, url: str, **params: Any) -> httpx.Response:
        """GET through the API with the right token."""
        response: httpx.Response = self.client.get(
            url, params=params, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        return response

    def direct(self, criteria: QueryCriteria | None = None) -> list[dict[str, Any]]:
        """Each shard's store queried on its own, its entries tagged with the shard."""
        criteria = criteria or QueryCriteria()
        found = []
        keys = bootstrap.open_keystore(self.settings)
        try:
            for p in range(SHARDS):
                store = bootstrap.open_store(self.settings, write=False, partition=p)
                try:
                    index_key = bootstrap.index_key(self.settings)
                    with store.reader() as reader:
                        views = query_entries(reader, keys, criteria, index_key)
                finally:
                    store.close()
                found.extend({**view.to_dict(), "shard": p} for view in views)
        finally:
            keys.close()
        return found

    def sizes(self) -> list[int]:
        """The number of entries of each shard."""
        sizes = []
        for p in range(SHARDS):
            store = bootstrap.open_store(self.settings, write=False, partition=p)
            try:
                with store.reader() as reader:
                    sizes.append(reader.size())
            finally:
                store.close()
        return sizes

    def heads_notes(self) -> list[tuple[int, str]]:
        store = bootstrap.open_heads_store(self.settings, write=False)
        try:
            return store.notes()
        finally:
            store.close()

    def latest_heads(self) -> HeadsNote:
        return open_heads(self.heads_notes()[-1][1], self.pinned, self.origin)


def _sqlite_owner(settings: AuditSinkSettings) -> tuple[Any, Any]:
    def owner(shard: int, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(settings.shard_log_file(shard), isolation_level=None)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()

    def disable(shard: int, table: str) -> None:
        for (trigger,) in owner(
            shard, "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?", [table]
        ):
            owner(shard, f"DROP TRIGGER {trigger}", [])

    return owner, disable


def _pg_owner(settings: AuditSinkSettings, owner_db: Any) -> tuple[Any, Any]:
    def owner(shard: int, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with owner_db.transaction():
            owner_db.execute(f'SET LOCAL search_path TO "{settings.shard_schema(shard)}"')
            cursor = owner_db.execute(sql.replace("?", "%s"), params or None)
            return cursor.fetchall() if cursor.description else []

    def disable(shard: int, table: str) -> None:
        owner(shard, f"ALTER TABLE {table} DISABLE TRIGGER USER", [])

    return owner, disable


def _install_pg(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """Fresh roles and schemas: the log's and the key store's, every shard's and the heads
    notes'; dropped after the test. Returns the owner connection."""
    return install_sharded_pg(request, tmp_path, monkeypatch, SHARDS)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def trail(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Trail]:
    """The trail of the module doc on each store, and the API over it."""
    for name in [n for n in os.environ if n.startswith("AUDIT_SINK_")]:
        monkeypatch.delenv(name)
    origin = unique_origin()
    signer = create_signing_key(tmp_path / "signing.key", origin)
    for name, value in {
        "ORIGIN": origin,
        "SHARDING": "partition",
        "HEADS_EVERY_S": "0",  # a heads note after every shard checkpoint
        "DATA_DIR": str(tmp_path / "sink"),
        "SIGNING_KEY_FILE": str(tmp_path / "signing.key"),
        "INDEX_KEY": base64.b64encode(os.urandom(32)).decode("ascii"),
        "VKEY": signer.verifier().vkey,
        "CHECKPOINT_DIR": str(tmp_path / "archive"),
        "VERIFY_WORKERS": "1",
    }.items():
        monkeypatch.setenv(f"AUDIT_SINK_{name}", value)
    owner_db = _install_pg(request, tmp_path, monkeypatch) if request.param == "postgres" else None
    settings = AuditSinkSettings()
    build(settings)
    owner, disable = _sqlite_owner(settings) if owner_db is None else _pg_owner(settings, owner_db)
    with TestClient(create_app(settings, token=TOKEN)) as client:
        built = Trail(settings, signer.verifier(), owner, disable, client)
        assert built.sizes() == [SAMPLE_BATCHES * PER_SHARD_BATCH + 2] * SHARDS
        yield built


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def by_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The order a sharded trail lists entries in: time, then shard, then index."""
    return sorted(rows, key=lambda r: (r["occurred_at"], r["shard"], r["index"]))


def cli_query(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    status, out, err = run(capsys, "query", *argv, "--format", "jsonl")
    assert status == 0, err
    return jsonl(out)


# -- query / GET /entries ---------------------------------------------------------------------


def test_query_joins_every_shard_sorted_by_time(
    trail: Trail, capsys: pytest.CaptureFixture[str]
) -> None:
    direct = trail.direct()
    assert len(direct) == SAMPLES + 6
    assert {r["shard"] for r in direct} == set(range(SHARDS))

    rows = cli_query(capsys)
    assert rows == by_time(direct)  # the same entries, each with its shard, by time
    assert rows[0]["event_id"] == "story-register"  # consumed last, happened first
    answer = trail.get("/entries")
    assert answer.status_code == 200
    assert answer.headers["Audit-Sink-Truncated"] == "false"
    assert answer.json() == rows


@pytest.mark.parametrize(
    ("argv", "params", "criteria"),
    [
        (["--outcome", "BLOCK"], {"outcome": "BLOCK"}, QueryCriteria(outcome="BLOCK")),
        (["--recipient", AGENCY], {"recipient": AGENCY}, QueryCriteria(recipient_id=AGENCY)),
        (["--account", SUBJECT], {"account": SUBJECT}, QueryCriteria(account_id=SUBJECT)),
        (["--order-ref", ORDER], {"order_ref": ORDER}, QueryCriteria(order_ref=ORDER)),
    ],
)
def test_query_filters_work_across_shards(
    trail: Trail,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    params: dict[str, str],
    criteria: QueryCriteria,
) -> None:
    expected = by_time(trail.direct(criteria))
    assert {r["shard"] for r in expected} == set(range(SHARDS))  # the filter spans shards

    assert cli_query(capsys, *argv) == expected
    answer = trail.get("/entries", **params)
    assert answer.status_code == 200
    assert answer.json() == expected
    if criteria.account_id is not None:
        assert {r["account_id"] for r in expected} == {SUBJECT}
        assert len(expected) == 4


def test_the_limit_cuts_the_joined_list(trail: Trail, capsys: pytest.CaptureFixture[str]) -> None:
    everything = cli_query(capsys)
    # The six entries of the story come first: each shard's last (highest indices).
    assert {r["event_id"] for r in everything[:6]} == {
        "story-register",
        "story-approve",
        "story-disclosed-1",
        "story-disclosed-2",
        "story-refused",
        "story-consented",
    }

    for limit in (1, 4, 7, 20):
        assert cli_query(capsys, "--limit", str(limit)) == everything[:limit]
        answer = trail.get("/entries", limit=limit)
        assert answer.status_code == 200
        assert answer.json() == everything[:limit]
        assert answer.headers["Audit-Sink-Truncated"] == "true"
    blocked = cli_query(capsys, "--outcome", "BLOCK")
    assert cli_query(capsys, "--outcome", "BLOCK", "--limit", "2") == blocked[:2]
    answer = trail.get("/entries", limit=len(everything))
    assert answer.headers["Audit-Sink-Truncated"] == "false"
    assert answer.json() == everything


def test_csv_and_table_name_the_shard(trail: Trail, capsys: pytest.CaptureFixture[str]) -> None:
    everything = cli_query(capsys)

    status, out, _ = run(capsys, "query", "--format", "csv")
    assert status == 0
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert out.startswith("shard,index,")
    assert [(int(r["shard"]), int(r["index"]), r["event_id"]) for r in parsed] == [
        (r["shard"], r["index"], r["event_id"]) for r in everything
    ]
    answer = trail.get("/entries", format="csv")
    assert answer.status_code == 200
    assert answer.text == out

    status, out, _ = run(capsys, "query")
    assert status == 0
    header, *lines = out.splitlines()
    assert header.split()[:3] == ["shard", "index", "occurred_at"]
    assert [tuple(line.split()[:2]) for line in lines] == [
        (str(r["shard"]), str(r["index"])) for r in everything
    ]


# -- proof / GET /proof ------------------------------------------------------------------------


@pytest.mark.parametrize("event_id", ["story-refused", "story-approve"])
def test_proof_comes_from_the_shard_holding_the_event(
    trail: Trail, capsys: pytest.CaptureFixture[str], event_id: str
) -> None:
    (held,) = [r for r in trail.direct() if r["event_id"] == event_id]
    member = shard_origin(trail.origin, held["shard"])

    status, bundle, err = run(capsys, "proof", event_id)

    assert status == 0, err
    leaf = parse_proof_bundle(bundle).extra
    assert leaf is not None
    assert decode_leaf(leaf).body["event_id"] == event_id
    proven = open_proof_bundle(bundle, leaf, [member_verifier(trail.pinned, member)], member)
    assert proven.checkpoint.origin == member
    assert (proven.index, proven.checkpoint.size) == (held["index"], trail.sizes()[held["shard"]])
    with pytest.raises(NoteError):  # the base key name does not sign a shard's checkpoint
        open_proof_bundle(bundle, leaf, [trail.pinned], trail.origin)
    with pytest.raises(NoteError):
        open_proof_bundle(bundle, leaf, [trail.pinned], member)
    other = shard_origin(trail.origin, (held["shard"] + 1) % SHARDS)
    with pytest.raises(NoteError):  # nor does another shard's
        open_proof_bundle(bundle, leaf, [member_verifier(trail.pinned, other)], other)

    answer = trail.get(f"/proof/{event_id}")
    assert answer.status_code == 200
    assert answer.text == bundle


def test_no_proof_of_an_unknown_event(trail: Trail, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "proof", "evt-not-there")
    assert (status, out) == (1, "")
    assert "no record" in err
    assert trail.get("/proof/evt-not-there").status_code == 404


# -- GET /checkpoint, verify -------------------------------------------------------------------


def test_checkpoint_is_the_latest_heads_note(trail: Trail) -> None:
    answer = trail.get("/checkpoint")

    assert answer.status_code == 200
    heads = open_heads(answer.text, trail.pinned, trail.origin)
    assert answer.text == trail.heads_notes()[-1][1]
    assert [(h.origin, h.size) for h in heads.heads] == [
        (shard_origin(trail.origin, p), size) for p, size in enumerate(trail.sizes())
    ]
    with pytest.raises(HeadsError, match="not a heads note"):  # of another trail
        open_heads(answer.text, trail.pinned, shard_origin(trail.origin, 0))


def test_verify_names_the_shard_and_index_of_a_tampered_entry(
    trail: Trail, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = trail.get("/verify")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["ok"], body["sharded"], body["size"], body["problems"]) == (
        True,
        True,
        sum(trail.sizes()),
        [],
    )
    assert [(m["origin"], m["partition"], m["size"]) for m in body["members"]] == [
        (shard_origin(trail.origin, p), p, size) for p, size in enumerate(trail.sizes())
    ]
    status, out, _ = run(capsys, "verify")
    assert status == 0
    assert out.startswith(f"OK: {sum(trail.sizes())} entries intact in 3 shard(s);")

    trail.disable_triggers(1, "leaves")
    trail.owner(1, "UPDATE leaves SET leaf_hash = ? WHERE idx = ?", [bytes(32), 5])

    body = trail.get("/verify").json()
    assert (body["ok"], body["sharded"], body["first_bad_index"]) == (False, True, 5)
    assert body["first_problem"]["member"] == "shard 1"
    assert body["first_problem"]["index"] == 5
    assert {p["member"] for p in body["problems"]} == {"shard 1"}
    assert [m["ok"] for m in body["members"]] == [True, False, True]
    status, out, _ = run(capsys, "verify")
    assert status == 1
    assert out.startswith("FAIL: first bad shard 1 entry 5:")


# -- erase ---------------------------------------------------------------------------------------


def _key_ids(trail: Trail) -> set[str]:
    """The subject key ids of the subject's sealed entries, over every shard."""
    found: set[str] = set()
    index_key = bootstrap.index_key(trail.settings)
    for p in range(SHARDS):
        store = bootstrap.open_store(trail.settings, write=False, partition=p)
        try:
            with store.reader() as reader:
                indices = reader.payload_indices_for_tag(index_key.account_tag(SUBJECT))
                found.update(row.key_id for row in reader.payloads(indices).values())
        finally:
            store.close()
    return found


def test_erase_reaches_every_shard_and_is_idempotent(
    trail: Trail, capsys: pytest.CaptureFixture[str]
) -> None:
    before = trail.direct(QueryCriteria(account_id=SUBJECT))
    assert {r["shard"] for r in before} == set(range(SHARDS))
    key_ids = _key_ids(trail)
    assert len(key_ids) == 1
    sizes, notes = trail.sizes(), len(trail.heads_notes())

    status, out, _ = run(capsys, "erase", SUBJECT)

    assert status == 0
    assert out.strip() == (
        f"erased {len(before)} entries (erasure entries in 3 member logs), destroyed 1 key(s), "
        f"deleted {len(before)} ciphertext(s)"
    )
    assert trail.sizes() == [size + 1 for size in sizes]  # an erasure entry in each shard
    keys = bootstrap.open_keystore(trail.settings)
    try:
        assert keys.keys(key_ids) == {}
    finally:
        keys.close()
    erased = {(r["shard"], r["index"]) for r in before}
    for row in cli_query(capsys):
        if (row["shard"], row["index"]) in erased:
            assert (row["personal"], row["account_id"], row["event_json"]) == (
                "erased",
                "<erased>",
                "<erased>",
            )
        else:
            assert row["account_id"] != "<erased>"
    assert cli_query(capsys, "--account", SUBJECT) == []
    assert trail.get("/entries", account=SUBJECT).json() == []
    status, out, _ = run(capsys, "verify", "--json")
    report = json.loads(out)
    assert (status, report["ok"]) == (0, True)
    assert sum(m["erased"] for m in report["members"]) == len(before)
    # a new heads note lists the shards with their erasure entries
    assert len(trail.heads_notes()) > notes
    assert [h.size for h in trail.latest_heads().heads] == trail.sizes()

    latest = trail.heads_notes()[-1]
    status, out, _ = run(capsys, "erase", SUBJECT)

    assert status == 0
    assert out.strip() == "erased 0 entries, destroyed 0 key(s), deleted 0 ciphertext(s)"
    assert trail.sizes() == [size + 1 for size in sizes]
    assert trail.heads_notes()[-1] == latest
    assert run(capsys, "verify")[0] == 0


# -- export --------------------------------------------------------------------------------------


def test_export_has_one_verifiable_directory_per_shard_and_the_heads_notes(
    trail: Trail, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    export = tmp_path / "export"

    status, _, err = run(capsys, "export", str(export))

    assert status == 0, err
    assert sorted(p.name for p in export.iterdir()) == ["heads", "shards"]
    assert sorted(p.name for p in (export / "shards").iterdir()) == ["0", "1", "2"]
    for p, size in enumerate(trail.sizes()):
        member = member_verifier(trail.pinned, shard_origin(trail.origin, p))
        result = verify_export(export / "shards" / str(p), "--vkey", member.vkey)
        assert (result.returncode, result.stdout.strip()) == (
            0,
            f"OK: {size} entries intact, 0 erased",
        ), result.stderr
    wrong = verify_export(export / "shards" / "0", "--vkey", trail.pinned.vkey)  # the base key name
    assert wrong.returncode == 1
    stored = trail.heads_notes()
    notes = sorted((export / "heads").glob("*.note"))
    assert sorted(int(n.stem) for n in notes) == [seq for seq, _ in stored]
    for seq, note in stored:
        assert (export / "heads" / f"{seq}.note").read_text("utf-8") == note
        open_heads(note, trail.pinned, trail.origin)


# -- report --------------------------------------------------------------------------------------


def test_report_counts_an_order_whose_records_sit_in_different_shards(
    trail: Trail, capsys: pytest.CaptureFixture[str]
) -> None:
    placed = {(r["event_id"], r["shard"]) for r in trail.direct() if r["order_ref"] == ORDER}
    assert placed == {
        ("story-register", 0),
        ("story-approve", 1),
        ("story-disclosed-1", 1),
        ("story-disclosed-2", 2),
        ("story-refused", 2),
    }
    expected = {
        "totals": {"orders": 1, "disclosures": 2, "refused": 1},
        "orders": [
            {
                "authority": "fedpol",
                "jurisdiction": "CH",
                "order_type": "COURT_ORDER",
                "status": "APPROVED",  # approved in shard 1 by another officer
                "count": 1,
            }
        ],
        "requests": [
            {
                "authority": "fedpol",
                "jurisdiction": "CH",
                "order_type": "COURT_ORDER",
                "outcome": outcome,
                "count": count,
            }
            for outcome, count in (("ALLOW", 2), ("BLOCK", 1))
        ],
        "unreadable_entries": 0,
    }

    status, out, _ = run(capsys, "report", *PERIOD, "--format", "json")

    assert status == 0
    data = json.loads(out)
    assert {k: data[k] for k in expected} == expected
    answer = trail.get("/transparency-report", **{"from": PERIOD[1], "to": PERIOD[3]})
    assert answer.status_code == 200
    assert answer.json() == data
    status, out, _ = run(capsys, "report", *PERIOD)
    assert status == 0
    assert "Orders received: 1" in out
    assert "Disclosures (transfers allowed under an order): 2" in out
