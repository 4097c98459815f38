"""The record the guard writes to ``governance.audit`` for the audit sink.

One record per decision and one per governance change. Fields marked personal in the
Avro schema (``account_id``, ``event_json``) are sealed by the audit sink before they
reach the tamper-evident log.
"""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from sharing_guard.contract.decision import Outcome, Reason
from sharing_guard.contract.types import Timestamp


class AuditKind(StrEnum):
    """What an audit record is about."""

    DECISION = "DECISION"
    GOVERNANCE_CHANGE = "GOVERNANCE_CHANGE"


class AuditRecord(BaseModel):
    """One entry for the audit trail."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    audit_id: str
    kind: AuditKind
    event_id: str
    event_type: str
    occurred_at: Timestamp
    account_id: str | None = None
    recipient_id: str | None = None
    order_ref: str | None = None
    actor: str | None = None
    outcome: Outcome | None = None
    reasons: tuple[Reason, ...] = ()
    policy_version: str | None = None
    event_json: str
