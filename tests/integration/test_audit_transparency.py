"""The transparency report over a real audit trail, on both stores, via function, CLI and HTTP.

A generated scenario (orders of several authorities registered, approved by the same or
another officer, revoked; law-enforcement decisions under them, under an unregistered
order, and unrelated decisions) goes through the sink's own writer; one data subject is
then erased. The report's numbers must equal the counts taken from the scenario's events.
"""

# The fixtures come from test_audit_support; pytest resolves parameters named after them.
# ruff: noqa: F811

from __future__ import annotations

import base64
import json
import os
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from audit_sink import cli
from audit_sink.http_api import create_app
from audit_sink.settings import AuditSinkSettings
from audit_sink.transparency import UNREGISTERED, Period, read_report
from fastapi.testclient import TestClient
from sharing_guard.audit_trail import audit_record
from sharing_guard.contract import (
    Clause,
    DataCategory,
    Decision,
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
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
    Backend,
    backend,  # noqa: F401
    consumed,
    next_positions,
    pg_names,  # noqa: F401
    sqlite_backend,
)

TOKEN = "tok_" + base64.urlsafe_b64encode(os.urandom(30)).decode("ascii")

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PERIOD = Period(T0 + timedelta(days=10), T0 + timedelta(days=40))
AUTHORITIES = (("Zug court", "CH"), ("fedpol", "CH"), ("BKA", "DE"))
OFFICERS = ("officer-a", "officer-b", "officer-c")


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


@dataclass
class Scenario:
    records: list[AuditRecord]
    orders: dict[str, OrderRegistered]
    approvals: list[OrderApproved]
    revocations: list[OrderRevoked]
    decisions: list[tuple[TransferRequested, Decision]]

    def expected(self) -> dict[str, Any]:
        """What a person counts from the events: the report's JSON, minus formatting."""
        end = PERIOD.end
        orders: Counter[tuple[str, str, str, str]] = Counter()
        for ref, reg in self.orders.items():
            if not PERIOD.start <= reg.occurred_at < end:
                continue
            if any(r.order_ref == ref and r.occurred_at < end for r in self.revocations):
                status = "REVOKED"
            elif any(
                a.order_ref == ref and a.occurred_at < end and a.approved_by != reg.registered_by
                for a in self.approvals
            ):
                status = "APPROVED"
            else:
                status = "PENDING"
            orders[(reg.authority, reg.jurisdiction, reg.order_type.value, status)] += 1
        requests: Counter[tuple[str, str, str, str]] = Counter()
        for transfer, decision in self.decisions:
            if decision.order_ref is None or not PERIOD.start <= transfer.occurred_at < end:
                continue
            reg = self.orders.get(decision.order_ref)
            if reg is not None and reg.occurred_at < end:
                key = (reg.authority, reg.jurisdiction, reg.order_type.value)
            else:
                key = (UNREGISTERED, UNREGISTERED, UNREGISTERED)
            requests[(*key, decision.outcome.value)] += 1
        return {
            "orders": {k: v for k, v in orders.items()},
            "requests": {k: v for k, v in requests.items()},
            "disclosures": sum(v for k, v in requests.items() if k[3] == "ALLOW"),
            "refused": sum(v for k, v in requests.items() if k[3] == "BLOCK"),
        }


def scenario(seed: int = 7) -> Scenario:
    rnd = random.Random(seed)
    events: list[tuple[datetime, AuditRecord]] = []
    orders: dict[str, OrderRegistered] = {}
    approvals, revocations, decisions = [], [], []
    for i in range(12):
        ref = f"ord-{i}"
        authority, jurisdiction = rnd.choice(AUTHORITIES)
        registered = OrderRegistered(
            event_id=f"reg-{ref}",
            occurred_at=day(rnd.uniform(0, 45)),
            order_ref=ref,
            order_type=rnd.choice(list(OrderType)),
            authority=authority,
            jurisdiction=jurisdiction,
            recipient_id="agency-1",
            account_ids=(f"acct-PERSONAL-{i}",),
            data_categories=(DataCategory.PERSONAL_INFORMATION,),
            valid_from=day(0),
            valid_until=day(90),
            max_disclosures=rnd.choice([None, 3]),
            registered_by=rnd.choice(OFFICERS),
        )
        orders[ref] = registered
        events.append((registered.occurred_at, audit_record(registered)))
        for j in range(rnd.randint(0, 2)):
            approved = OrderApproved(
                event_id=f"ok-{ref}-{j}",
                occurred_at=registered.occurred_at + timedelta(days=rnd.uniform(0, 10)),
                order_ref=ref,
                approved_by=rnd.choice(OFFICERS),
            )
            approvals.append(approved)
            events.append((approved.occurred_at, audit_record(approved)))
        if rnd.random() < 0.3:
            revoked = OrderRevoked(
                event_id=f"rev-{ref}",
                occurred_at=registered.occurred_at + timedelta(days=rnd.uniform(0, 15)),
                order_ref=ref,
                revoked_by="officer-c",
                reason="quashed on appeal",
            )
            revocations.append(revoked)
            events.append((revoked.occurred_at, audit_record(revoked)))
    refs: list[str | None] = [*orders, "ord-unregistered", None]
    for k in range(120):
        ref = rnd.choice(refs)
        law = ref is not None
        transfer = TransferRequested(
            event_id=f"t-{k}",
            occurred_at=day(rnd.uniform(0, 50)),
            source_service="legal-export" if law else "crm",
            account_id=f"acct-PERSONAL-{k % 9}",
            data_categories=(DataCategory.PERSONAL_INFORMATION,),
            recipient=Recipient(
                id="agency-1" if law else "rcp-crm",
                type=RecipientType.LAW_ENFORCEMENT if law else RecipientType.THIRD_PARTY,
                jurisdiction="CH",
            ),
            purpose=Purpose.LEGAL_ORDER if law else Purpose.CONSENTED_SHARING,
            order_ref=ref,
        )
        outcome = rnd.choice(list(Outcome))
        code = (
            (ReasonCode.ORDER if law else ReasonCode.CONSENT)
            if outcome is Outcome.ALLOW
            else (ReasonCode.ORDER_QUOTA_EXHAUSTED if law else ReasonCode.CONSENT_MISSING)
        )
        clause = Clause.LAW_ENFORCEMENT if law else Clause.THIRD_PARTY_CONSENT
        decision = Decision(
            event_id=transfer.event_id,
            outcome=outcome,
            reasons=(Reason(code=code, clause=clause),),
            policy_version="2026.1",
            order_ref=ref,
        )
        decisions.append((transfer, decision))
        events.append((transfer.occurred_at, audit_record(transfer, decision)))
    rnd.shuffle(events)  # the trail's order is consumption order, not event time
    return Scenario([r for _, r in events], orders, approvals, revocations, decisions)


def write(backend: Backend, records: list[AuditRecord]) -> None:
    log = backend.log()
    for start in range(0, len(records), 50):
        batch = consumed(records[start : start + 50], start=start)
        log.append_batch(batch, next_positions(batch))
    log.append_batch(consumed(records[:10]), {})  # a redelivery changes nothing
    log.erase("acct-PERSONAL-3")  # erasure keeps the non-personal fields counted


def as_expected(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "orders": {
            (g["authority"], g["jurisdiction"], g["order_type"], g["status"]): g["count"]
            for g in report["orders"]
        },
        "requests": {
            (g["authority"], g["jurisdiction"], g["order_type"], g["outcome"]): g["count"]
            for g in report["requests"]
        },
        "disclosures": report["totals"]["disclosures"],
        "refused": report["totals"]["refused"],
    }


def test_the_report_equals_the_counts_of_the_scenario(backend: Backend) -> None:
    story = scenario()
    write(backend, story.records)
    store = backend.open_reader()
    try:
        with store.reader() as reader:
            report = read_report(reader, PERIOD)
    finally:
        store.close()
    data = report.to_dict()
    expected = story.expected()
    assert as_expected(data) == expected
    assert data["totals"]["orders"] == sum(expected["orders"].values())
    assert data["unreadable_entries"] == 0
    # the scenario exercises every status and both outcomes, and an unregistered order
    assert {k[3] for k in expected["orders"]} == {"PENDING", "APPROVED", "REVOKED"}
    assert {k[3] for k in expected["requests"]} == {"ALLOW", "BLOCK"}
    assert any(k[0] == UNREGISTERED for k in expected["requests"])
    assert "acct-PERSONAL" not in json.dumps(data)


@pytest.fixture
def sqlite_trail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Scenario, Backend]:
    """The scenario in an SQLite trail, and the environment naming it (as an operator sets)."""
    for name in list(os.environ):
        if name.startswith("AUDIT_SINK_"):
            monkeypatch.delenv(name)
    built = sqlite_backend(tmp_path)
    story = scenario(seed=11)
    try:
        write(built, story.records)
    finally:
        built.close()
    monkeypatch.setenv("AUDIT_SINK_ORIGIN", built.origin)
    monkeypatch.setenv("AUDIT_SINK_DATA_DIR", str(tmp_path / "sink"))
    monkeypatch.setenv("AUDIT_SINK_SQLITE__LOG_FILE", str(tmp_path / "log.db"))
    monkeypatch.setenv("AUDIT_SINK_SQLITE__KEYS_FILE", str(tmp_path / "keys.db"))
    monkeypatch.setenv("AUDIT_SINK_VKEY", built.verifier.vkey)  # the server pins it
    return story, built


def test_the_cli_prints_the_report_as_json_and_as_a_table(
    sqlite_trail: tuple[Scenario, Backend], capsys: pytest.CaptureFixture[str]
) -> None:
    story, _ = sqlite_trail
    period = ["--from", "2026-03-11T00:00:00Z", "--to", "2026-04-10T00:00:00+00:00"]
    assert cli.main(["report", *period, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert as_expected(data) == story.expected()

    assert cli.main(["report", *period]) == 0
    table = capsys.readouterr().out
    assert f"Orders received: {data['totals']['orders']}" in table
    assert f"Disclosures (transfers allowed under an order): {data['totals']['disclosures']}" in (
        table
    )
    for group in data["requests"]:
        assert group["authority"] in table


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--from", "2026-03-11T00:00:00", "--to", "2026-04-10T00:00:00Z"],
            "--from needs a time zone",
        ),
        (["--from", "2026-04-11T00:00:00Z", "--to", "2026-04-10T00:00:00Z"], "later than"),
        (["--from", "yesterday", "--to", "2026-04-10T00:00:00Z"], "--from is not an RFC 3339"),
    ],
)
def test_the_cli_refuses_a_bad_period_clearly(
    sqlite_trail: tuple[Scenario, Backend],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    assert cli.main(["report", *argv]) == cli.EXIT_CANNOT_RUN
    assert message in capsys.readouterr().err


def test_the_http_endpoint_answers_the_same_behind_the_token(
    sqlite_trail: tuple[Scenario, Backend],
) -> None:
    story, _ = sqlite_trail
    app = create_app(AuditSinkSettings(), token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    params = {"from": "2026-03-11T00:00:00Z", "to": "2026-04-10T00:00:00Z"}
    with TestClient(app) as client:
        response = client.get("/transparency-report", params=params, headers=auth)
        assert response.status_code == 200
        assert as_expected(response.json()) == story.expected()

        table = client.get(
            "/transparency-report", params={**params, "format": "table"}, headers=auth
        )
        assert table.status_code == 200
        assert table.headers["content-type"].startswith("text/plain")
        assert f"Orders received: {response.json()['totals']['orders']}" in table.text

        assert client.get("/transparency-report", params=params).status_code == 401
        wrong = {"Authorization": "Bearer " + "x" * 40}
        assert client.get("/transparency-report", params=params, headers=wrong).status_code == 401
        missing = client.get("/transparency-report", params={"from": params["from"]}, headers=auth)
        assert missing.status_code == 422
        zoneless = {**params, "from": "2026-03-11T00:00:00"}
        answer = client.get("/transparency-report", params=zoneless, headers=auth)
        assert answer.status_code == 400
        assert "'from'" in answer.json()["detail"]
        backwards = {"from": params["to"], "to": params["from"]}
        assert client.get("/transparency-report", params=backwards, headers=auth).status_code == 400
        typo = client.get("/transparency-report", params={**params, "fromm": "x"}, headers=auth)
        assert typo.status_code == 400
