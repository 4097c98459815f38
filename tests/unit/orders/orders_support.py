"""An in-process order service for the API tests: real app, real SQLite store, real auth.

Only the broker is replaced: publishing an event applies it to the store at the next
offset of ``legal.orders`` (what the follower does once the event comes back), and the
published events are kept so tests can check who a change names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sharing_guard.contract.decision import Decision, Reason
from sharing_guard.contract.enums import Clause, Outcome, ReasonCode
from sharing_guard.orders.api import create_app
from sharing_guard.orders.auth import Authenticator, Role, TokenEntry, new_token, token_hash
from sharing_guard.orders.model import OrderEvent
from sharing_guard.orders.service import OrderService
from sharing_guard.orders.store import OrderStore

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    """A settable clock."""

    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Tokens:
    """One token per kind of caller, and the entries configured for them."""

    officer_a: str = field(default_factory=new_token)
    officer_b: str = field(default_factory=new_token)
    reviewer: str = field(default_factory=new_token)
    admin: str = field(default_factory=new_token)
    expired: str = field(default_factory=new_token)
    unknown: str = field(default_factory=new_token)

    def entries(self) -> list[TokenEntry]:
        later, earlier = NOW + timedelta(days=365), NOW - timedelta(seconds=1)

        def entry(officer: str, role: Role, token: str, until: datetime = later) -> TokenEntry:
            return TokenEntry(
                officer_id=officer, role=role, expires_at=until, token_sha256=token_hash(token)
            )

        return [
            entry("officer-a", Role.LEGAL_OFFICER, self.officer_a),
            entry("officer-b", Role.LEGAL_OFFICER, self.officer_b),
            entry("reviewer-1", Role.SECURITY_REVIEWER, self.reviewer),
            entry("admin-1", Role.ADMINISTRATOR, self.admin),
            entry("officer-old", Role.LEGAL_OFFICER, self.expired, earlier),
        ]


@dataclass
class LocalService:
    """The wired app with its store, clock and the events it published."""

    app: FastAPI
    store: OrderStore
    clock: Clock
    tokens: Tokens
    published: list[OrderEvent]

    def decide(self, event_id: str, order_ref: str, outcome: Outcome) -> None:
        """Record a guard decision naming the order, as the follower would."""
        reason = (
            Reason(code=ReasonCode.ORDER, clause=Clause.LAW_ENFORCEMENT)
            if outcome is Outcome.ALLOW
            else Reason(code=ReasonCode.ORDER_QUOTA_EXHAUSTED, clause=Clause.LAW_ENFORCEMENT)
        )
        decision = Decision(
            event_id=event_id,
            outcome=outcome,
            reasons=(reason,),
            policy_version="test",
            order_ref=order_ref,
        )
        self.store.apply(decisions=[(decision, self.clock())])


def local_service() -> LocalService:
    """A fresh service on an in-memory SQLite store."""
    store = OrderStore(":memory:")
    clock = Clock()
    tokens = Tokens()
    published: list[OrderEvent] = []

    def publish(event: OrderEvent) -> bool:
        published.append(event)
        store.apply(events=[event], offsets={("legal.orders", 0): len(published)})
        return True

    service = OrderService(store, publish, clock)
    app = create_app(
        service,
        Authenticator(tokens.entries()),
        lambda: {"producer_connected": True, "state_loaded": True},
        clock,
    )
    return LocalService(app, store, clock, tokens, published)


def order_body(ref: str | None = None, **overrides: object) -> dict[str, object]:
    """A valid registration body."""
    body: dict[str, object] = {
        "order_type": "COURT_ORDER",
        "authority": "court-zurich",
        "jurisdiction": "CH",
        "recipient_id": "police-zh",
        "account_ids": ["acct-1", "acct-2"],
        "data_categories": ["VIRTUAL_DRIVE_DATA"],
        "valid_from": "2026-05-01T00:00:00Z",
        "valid_until": "2026-07-01T00:00:00Z",
        "max_disclosures": 2,
    }
    if ref is not None:
        body["order_ref"] = ref
    body.update(overrides)
    return body


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}
