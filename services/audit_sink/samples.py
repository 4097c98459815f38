"""Realistic, deterministic ``AuditRecord`` streams for tests, benchmarks and demos (pure).

:func:`sample_records` yields what the guard publishes on ``governance.audit``, built with
the guard's own :func:`sharing_guard.audit_trail.audit_record` from real contract events:
mostly decisions on ``TransferRequested`` events (about four in five allowed under a legal
basis, the rest blocked with one or two block codes), and governance changes (consents,
subject rights, recipient registrations, order approvals), about one in eight. Records that
concern an account carry its id and the event JSON (what the sink seals); the others name no
data subject. Every identifier is synthetic (``acct-000042``, ``rcp-07``): no real personal
data. The same ``(count, seed)`` always gives the same records, and a shorter stream is a
prefix of a longer one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Final

from sharing_guard.audit_trail import audit_record
from sharing_guard.contract.audit import AuditRecord
from sharing_guard.contract.decision import Decision, Reason
from sharing_guard.contract.enums import (
    Clause,
    ConsentScope,
    ConsentStatus,
    DataCategory,
    Outcome,
    Purpose,
    ReasonCode,
    RecipientType,
    SubjectRightsAction,
)
from sharing_guard.contract.events import (
    ConsentChanged,
    Event,
    OrderApproved,
    Recipient,
    RecipientRegistered,
    SubjectRightsChanged,
    TransferRequested,
)

__all__ = ["POLICY_VERSION", "sample_records"]

POLICY_VERSION: Final = "2026.1"
_START: Final = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
_ACCOUNTS: Final = 5000
_RECIPIENTS: Final = 40
_ALLOW: Final = (
    (ReasonCode.PROCESSOR, Clause.PROCESSOR_PURPOSE),
    (ReasonCode.PROCESSOR, Clause.PROCESSOR_PURPOSE),
    (ReasonCode.PROCESSOR, Clause.PROCESSOR_PURPOSE),
    (ReasonCode.FRAUD_PREVENTION, Clause.FRAUD),
    (ReasonCode.CONSENT, Clause.THIRD_PARTY_CONSENT),
    (ReasonCode.BUSINESS_TRANSFER, Clause.BUSINESS_TRANSFER),
)
_BLOCK: Final = (
    (ReasonCode.CONSENT_MISSING, Clause.THIRD_PARTY_CONSENT),
    (ReasonCode.CONSENT_WITHDRAWN, Clause.CONSENT_WITHDRAWAL),
    (ReasonCode.PURPOSE_NOT_PERMITTED, Clause.PROCESSOR_PURPOSE),
    (ReasonCode.RECIPIENT_NOT_REGISTERED, Clause.DEFAULT_DENY),
    (ReasonCode.VDD_EGRESS_FORBIDDEN, Clause.VDD_NO_SHARING),
    (ReasonCode.CHILD_DATA, Clause.CHILDREN),
    (ReasonCode.PROCESSING_RESTRICTED, Clause.RESTRICTION),
)
_PURPOSES: Final = (
    Purpose.DOCUMENT_PROCESSING,
    Purpose.CUSTOMER_COMMUNICATIONS,
    Purpose.DATA_ANALYSIS,
    Purpose.PAYMENT_PROCESSING,
    Purpose.FRAUD_PREVENTION,
    Purpose.CONSENTED_SHARING,
)


class _Stream:
    """The state of one stream: its random generator and clock."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.at = _START

    def account(self) -> str:
        return f"acct-{self.rng.randrange(_ACCOUNTS):06d}"

    def recipient(self) -> str:
        return f"rcp-{self.rng.randrange(_RECIPIENTS):02d}"

    def event(self, n: int) -> tuple[Event, Decision | None]:
        self.at += timedelta(milliseconds=self.rng.randrange(1, 200))
        event_id = f"evt-{self.seed:x}-{n:08d}"
        roll = self.rng.random()
        if roll < 0.875:
            return self.transfer(event_id)
        if roll < 0.945:
            scope = self.rng.choice(list(ConsentScope))
            return (
                ConsentChanged(
                    event_id=event_id,
                    occurred_at=self.at,
                    account_id=self.account(),
                    scope=scope,
                    recipient_id=None if scope == ConsentScope.MARKETING else self.recipient(),
                    status=self.rng.choice(list(ConsentStatus)),
                ),
                None,
            )
        if roll < 0.96:
            return (
                SubjectRightsChanged(
                    event_id=event_id,
                    occurred_at=self.at,
                    account_id=self.account(),
                    action=self.rng.choice(list(SubjectRightsAction)),
                ),
                None,
            )
        if roll < 0.98:
            return (
                RecipientRegistered(
                    event_id=event_id,
                    occurred_at=self.at,
                    recipient_id=self.recipient(),
                    recipient_type=RecipientType.SUBCONTRACTOR,
                    jurisdiction="DE",
                    permitted_purposes=(Purpose.DOCUMENT_PROCESSING, Purpose.DATA_ANALYSIS),
                    agreement_ref=f"dpa-{self.rng.randrange(1000):04d}",
                ),
                None,
            )
        return (
            OrderApproved(
                event_id=event_id,
                occurred_at=self.at,
                order_ref=f"ord-2026-{self.rng.randrange(500):04d}",
                approved_by=f"officer-{self.rng.randrange(12):02d}",
            ),
            None,
        )

    def transfer(self, event_id: str) -> tuple[Event, Decision]:
        rng = self.rng
        event = TransferRequested(
            event_id=event_id,
            occurred_at=self.at,
            source_service="document-service",
            account_id=self.account(),
            subject_age=rng.randrange(18, 90) if rng.random() < 0.3 else None,
            data_categories=(DataCategory.PERSONAL_INFORMATION,),
            recipient=Recipient(
                id=self.recipient(), type=RecipientType.SUBCONTRACTOR, jurisdiction="DE"
            ),
            purpose=rng.choice(_PURPOSES),
            payload_ref=f"s3://transfers/{event_id}.json",
            size_bytes=rng.randrange(1_000, 5_000_000),
        )
        if rng.random() < 0.8:
            outcome, picked = Outcome.ALLOW, [rng.choice(_ALLOW)]
        else:
            outcome = Outcome.BLOCK
            picked = rng.sample(_BLOCK, 2 if rng.random() < 0.25 else 1)
        decision = Decision(
            event_id=event_id,
            outcome=outcome,
            reasons=tuple(Reason(code=code, clause=clause) for code, clause in picked),
            policy_version=POLICY_VERSION,
        )
        return event, decision


def sample_records(count: int, seed: int = 0) -> Iterator[AuditRecord]:
    """``count`` audit records as the guard would publish them (deterministic per seed)."""
    stream = _Stream(seed)
    for n in range(count):
        event, decision = stream.event(n)
        yield audit_record(event, decision)
