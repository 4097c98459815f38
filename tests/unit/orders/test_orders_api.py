"""The order workflow through its HTTP API (in process, on a real SQLite store).

Four eyes answered with 409 and a message saying so; revocation is final; states follow
the clock (expiry) and the guard's decisions (exhaustion, refused attempts) without anyone
acting; the store survives a restart and never counts a decision twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from orders_support import NOW, bearer, local_service, order_body
from sharing_guard.contract.decision import Decision, Reason
from sharing_guard.contract.enums import Clause, Outcome, ReasonCode
from sharing_guard.contract.events import OrderApproved, OrderRegistered
from sharing_guard.orders.store import OrderStore


def test_the_workflow_four_eyes_quota_expiry_and_revocation() -> None:
    local = local_service()
    client = TestClient(local.app)
    a, b, admin = (
        bearer(t) for t in (local.tokens.officer_a, local.tokens.officer_b, local.tokens.admin)
    )

    created = client.post("/orders", json=order_body("o-1", max_disclosures=2), headers=a)
    assert created.status_code == 201
    assert created.json()["state"] == "PENDING"
    assert created.json()["registered_by"] == "officer-a"

    again = client.post("/orders", json=order_body("o-1"), headers=b)
    assert again.status_code == 409
    assert "already registered" in again.json()["detail"]

    own = client.post("/orders/o-1/approve", headers=a)
    assert own.status_code == 409
    assert "four eyes" in own.json()["detail"]
    assert client.get("/orders/o-1", headers=a).json()["state"] == "PENDING"

    approved = client.post("/orders/o-1/approve", headers=b)
    assert approved.status_code == 200
    assert approved.json()["state"] == "IN_FORCE"
    assert approved.json()["approved_by"] == "officer-b"
    twice = client.post("/orders/o-1/approve", headers=admin)
    assert twice.status_code == 409
    assert "already approved by officer-b" in twice.json()["detail"]

    local.decide("t-1", "o-1", Outcome.ALLOW)
    local.decide("t-1", "o-1", Outcome.ALLOW)  # the guard's republished duplicate
    shown = client.get("/orders/o-1", headers=a).json()
    assert (shown["state"], shown["disclosure_count"], shown["remaining_disclosures"]) == (
        "IN_FORCE",
        1,
        1,
    )
    local.decide("t-2", "o-1", Outcome.ALLOW)
    local.decide("t-3", "o-1", Outcome.BLOCK)
    shown = client.get("/orders/o-1", headers=a).json()
    assert shown["state"] == "EXHAUSTED"
    assert [d["event_id"] for d in shown["disclosures"]] == ["t-1", "t-2"]
    assert shown["refused_count"] == 1
    assert [o["order_ref"] for o in client.get("/orders?state=EXHAUSTED", headers=a).json()] == [
        "o-1"
    ]

    revoked = client.post("/orders/o-1/revoke", json={"reason": "lifted"}, headers=admin)
    assert revoked.status_code == 200
    assert (revoked.json()["state"], revoked.json()["revoked_by"]) == ("REVOKED", "admin-1")
    assert revoked.json()["revoke_reason"] == "lifted"
    again = client.post("/orders/o-1/revoke", json={"reason": "x"}, headers=b)
    assert again.status_code == 409
    assert "already revoked" in again.json()["detail"]


def test_expiry_shows_without_anyone_acting() -> None:
    local = local_service()
    client = TestClient(local.app)
    a, b = bearer(local.tokens.officer_a), bearer(local.tokens.officer_b)
    client.post("/orders", json=order_body("o-2", valid_until="2026-06-02T00:00:00Z"), headers=a)
    client.post("/orders/o-2/approve", headers=b)
    assert client.get("/orders/o-2", headers=a).json()["state"] == "IN_FORCE"
    local.clock.now = NOW + timedelta(days=2)
    assert client.get("/orders/o-2", headers=a).json()["state"] == "EXPIRED"
    assert client.get("/orders?state=IN_FORCE", headers=a).json() == []


def test_an_order_not_yet_valid_is_pending_and_an_expired_one_cannot_be_approved() -> None:
    local = local_service()
    client = TestClient(local.app)
    a, b = bearer(local.tokens.officer_a), bearer(local.tokens.officer_b)
    body = order_body("o-3", valid_from="2026-06-10T00:00:00Z", valid_until="2026-06-20T00:00:00Z")
    client.post("/orders", json=body, headers=a)
    assert client.post("/orders/o-3/approve", headers=b).json()["state"] == "PENDING"
    local.clock.now = NOW + timedelta(days=10)
    assert client.get("/orders/o-3", headers=a).json()["state"] == "IN_FORCE"

    client.post("/orders", json=body | {"order_ref": "o-4"}, headers=a)
    local.clock.now = NOW + timedelta(days=30)
    late = client.post("/orders/o-4/approve", headers=b)
    assert late.status_code == 409
    assert "expired" in late.json()["detail"]


def test_unknown_orders_and_invalid_bodies_are_named() -> None:
    local = local_service()
    client = TestClient(local.app)
    a = bearer(local.tokens.officer_a)
    missing = client.post("/orders/nope/approve", headers=a)
    assert missing.status_code == 404
    assert "nope" in missing.json()["detail"]
    assert client.get("/orders/nope", headers=a).status_code == 404
    bad = client.post(
        "/orders",
        json=order_body(jurisdiction="ch", account_ids=[], max_disclosures=0),
        headers=a,
    )
    assert bad.status_code == 422
    fields = {tuple(p["loc"]) for p in bad.json()["detail"]}
    assert fields == {
        ("body", "jurisdiction"),
        ("body", "account_ids"),
        ("body", "max_disclosures"),
    }
    window = client.post(
        "/orders",
        json=order_body(valid_from="2026-07-01T00:00:00Z", valid_until="2026-06-01T00:00:00Z"),
        headers=a,
    )
    assert window.status_code == 422
    assert "the validity window has no length" in window.text
    assert client.post("/orders/x/revoke", json={}, headers=a).status_code == 422
    for quota in ("2", True, 2.5):  # never guessed into a number
        refused = client.post("/orders", json=order_body(max_disclosures=quota), headers=a)
        assert refused.status_code == 422
        assert [p["loc"] for p in refused.json()["detail"]] == [["body", "max_disclosures"]]


def test_a_reference_cannot_hold_a_line_break(caplog: pytest.LogCaptureFixture) -> None:
    local = local_service()
    client = TestClient(local.app)
    forged = "o-6\n2026-06-01 INFO order approved: order_ref=o-6 officer=officer-b"
    with caplog.at_level(logging.INFO):
        refused = client.post(
            "/orders", json=order_body(forged), headers=bearer(local.tokens.officer_a)
        )
    assert refused.status_code == 422
    (problem,) = refused.json()["detail"]
    assert problem["loc"] == ["body", "order_ref"]
    assert "U+000A" in problem["msg"]
    assert "order approved" not in refused.text  # the value is named, not echoed
    assert not [r for r in caplog.records if "approved" in r.getMessage()]


def test_the_store_survives_a_restart_and_counts_each_decision_once(tmp_path: Path) -> None:
    path = tmp_path / "orders.sqlite3"
    registration = OrderRegistered.model_validate(
        {
            **order_body("o-5"),
            "event_id": "r-5",
            "occurred_at": NOW,
            "registered_by": "officer-a",
        }
    )
    approval = OrderApproved(event_id="a-5", occurred_at=NOW, order_ref="o-5", approved_by="b")
    allow = Decision(
        event_id="t-9",
        outcome=Outcome.ALLOW,
        reasons=(Reason(code=ReasonCode.ORDER, clause=Clause.LAW_ENFORCEMENT),),
        policy_version="v",
        order_ref="o-5",
    )
    store = OrderStore(path)
    store.apply([registration], [(allow, NOW)], {("legal.orders", 0): 1, ("d", 3): 8})
    store.close()

    store = OrderStore(path)
    store.apply([registration, approval], [(allow, NOW)], {("legal.orders", 0): 2})
    record = store.record("o-5")
    assert record is not None
    assert record.approved_by == "b"
    assert store.disclosure_counts() == {"o-5": (1, 0)}
    assert store.offsets() == {("legal.orders", 0): 2, ("d", 3): 8}
    assert store.wait_applied(("legal.orders", 0), 1, 0.0)
    assert not store.wait_applied(("legal.orders", 0), 2, 0.0)
    store.close()
