"""Audit records for the trail: one per decision, one per governance change (pure)."""

from typing import Any

from sharing_guard.contract.audit import AuditKind, AuditRecord
from sharing_guard.contract.decision import Decision
from sharing_guard.contract.events import (
    ConsentChanged,
    Event,
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
    RecipientDeregistered,
    RecipientRegistered,
    SubjectRightsChanged,
    TransferRequested,
)
from sharing_guard.contract.policy_events import PolicyPromoted

Audited = Event | PolicyPromoted
"""What the trail records: the contract's events and the policy's promotions."""


def _subjects(event: Audited) -> tuple[str | None, str | None, str | None, str | None]:
    """(account_id, recipient_id, order_ref, actor) of an event, where it has them."""
    if isinstance(event, TransferRequested):
        return event.account_id, event.recipient.id, event.order_ref, None
    if isinstance(event, ConsentChanged):
        return event.account_id, event.recipient_id, None, None
    if isinstance(event, SubjectRightsChanged):
        return event.account_id, None, None, None
    if isinstance(event, RecipientRegistered | RecipientDeregistered):
        return None, event.recipient_id, None, None
    if isinstance(event, OrderRegistered):
        return None, event.recipient_id, event.order_ref, event.registered_by
    if isinstance(event, OrderApproved):
        return None, None, event.order_ref, event.approved_by
    if isinstance(event, OrderRevoked):
        return None, None, event.order_ref, event.revoked_by
    if isinstance(event, PolicyPromoted):
        return None, None, None, event.promoted_by
    raise TypeError(f"not a contract event: {type(event).__name__}")


def _fields(event: Audited, decision: Decision | None) -> dict[str, Any]:
    account_id, recipient_id, order_ref, actor = _subjects(event)
    kind = AuditKind.DECISION if decision is not None else AuditKind.GOVERNANCE_CHANGE
    return {
        "audit_id": f"{kind.value}:{event.event_id}",
        "kind": kind,
        "event_id": event.event_id,
        "event_type": event.type,
        "occurred_at": event.occurred_at,
        "account_id": account_id,
        "recipient_id": recipient_id,
        "order_ref": decision.order_ref if decision is not None else order_ref,
        "actor": actor,
        "outcome": decision.outcome if decision is not None else None,
        "reasons": decision.reasons if decision is not None else (),
        "policy_version": decision.policy_version if decision is not None else None,
        "event_json": event.model_dump_json(),
    }


def audit_record(event: Audited, decision: Decision | None = None) -> AuditRecord:
    """The audit record of a decision (with its transfer) or of a governance change."""
    return AuditRecord(**_fields(event, decision))


def audit_avro_record(event: Audited, decision: Decision | None = None) -> dict[str, Any]:
    """The same audit record as the dict its Avro schema writes, built without the
    model: the guard writes one per decision, and skipping the model's validation and
    dump halves what that costs. The unit tests hold it to :func:`audit_record`."""
    fields = _fields(event, decision)
    fields["reasons"] = [{"code": r.code, "clause": r.clause} for r in fields["reasons"]]
    return fields
