"""Builders for contract events with sensible defaults, so each test states only what matters."""

from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from sharing_guard.contract import (
    ConsentChanged,
    ConsentScope,
    ConsentStatus,
    DataCategory,
    Event,
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
    OrderType,
    Purpose,
    Recipient,
    RecipientDeregistered,
    RecipientRegistered,
    RecipientType,
    SubjectRightsAction,
    SubjectRightsChanged,
    TransferRequested,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
_ids = count(1)


def at(minutes: float) -> datetime:
    """An instant ``minutes`` after the fixed start of every scenario."""
    return T0 + timedelta(minutes=minutes)


def _base(minutes: float, event_id: str | None) -> dict[str, Any]:
    return {"event_id": event_id or f"evt-{next(_ids):06d}", "occurred_at": at(minutes)}


def transfer(
    *,
    minutes: float = 10,
    event_id: str | None = None,
    account: str = "acc-1",
    recipient: str = "rcp-1",
    rtype: RecipientType = RecipientType.SUBCONTRACTOR,
    jurisdiction: str = "CH",
    purpose: Purpose = Purpose.DATA_ANALYSIS,
    categories: tuple[DataCategory, ...] = (DataCategory.PERSONAL_INFORMATION,),
    **fields: Any,
) -> TransferRequested:
    """A transfer request; by default personal information to subcontractor rcp-1."""
    return TransferRequested(
        **_base(minutes, event_id),
        source_service="svc-test",
        account_id=account,
        data_categories=categories,
        recipient=Recipient(id=recipient, type=rtype, jurisdiction=jurisdiction),
        purpose=purpose,
        **fields,
    )


def register(
    recipient: str = "rcp-1",
    rtype: RecipientType = RecipientType.SUBCONTRACTOR,
    purposes: tuple[Purpose, ...] = (Purpose.DATA_ANALYSIS,),
    *,
    minutes: float = 0,
) -> RecipientRegistered:
    """Register a recipient with its permitted purposes."""
    return RecipientRegistered(
        **_base(minutes, None),
        recipient_id=recipient,
        recipient_type=rtype,
        jurisdiction="CH",
        permitted_purposes=purposes,
        agreement_ref="dpa-1",
    )


def deregister(recipient: str = "rcp-1", *, minutes: float = 0) -> RecipientDeregistered:
    """End a recipient's registration."""
    return RecipientDeregistered(**_base(minutes, None), recipient_id=recipient)


def consent(
    status: ConsentStatus,
    *,
    account: str = "acc-1",
    scope: ConsentScope = ConsentScope.MARKETING,
    recipient: str | None = None,
    minutes: float = 0,
    event_id: str | None = None,
) -> ConsentChanged:
    """A consent given or withdrawn."""
    return ConsentChanged(
        **_base(minutes, event_id),
        account_id=account,
        scope=scope,
        recipient_id=recipient,
        status=status,
    )


def rights(
    action: SubjectRightsAction, *, account: str = "acc-1", minutes: float = 0
) -> SubjectRightsChanged:
    """A data subject's right exercised."""
    return SubjectRightsChanged(**_base(minutes, None), account_id=account, action=action)


def order(
    ref: str = "ord-1",
    *,
    accounts: tuple[str, ...] = ("acc-1",),
    agency: str = "agency-1",
    jurisdiction: str = "CH",
    categories: tuple[DataCategory, ...] = (
        DataCategory.PERSONAL_INFORMATION,
        DataCategory.VIRTUAL_DRIVE_DATA,
    ),
    valid_from: float = 0,
    valid_until: float = 60,
    max_disclosures: int | None = None,
    registered_by: str = "officer-a",
    minutes: float = 0,
) -> OrderRegistered:
    """A court order covering acc-1 for agency-1, in force minutes 0..60."""
    return OrderRegistered(
        **_base(minutes, None),
        order_ref=ref,
        order_type=OrderType.COURT_ORDER,
        authority="Zug court",
        jurisdiction=jurisdiction,
        recipient_id=agency,
        account_ids=accounts,
        data_categories=categories,
        valid_from=at(valid_from),
        valid_until=at(valid_until),
        max_disclosures=max_disclosures,
        registered_by=registered_by,
    )


def approve(ref: str = "ord-1", by: str = "officer-b", *, minutes: float = 1) -> OrderApproved:
    """An approval of an order."""
    return OrderApproved(**_base(minutes, None), order_ref=ref, approved_by=by)


def revoke(ref: str = "ord-1", by: str = "officer-b", *, minutes: float = 2) -> OrderRevoked:
    """A revocation of an order."""
    return OrderRevoked(**_base(minutes, None), order_ref=ref, revoked_by=by, reason="withdrawn")


def le_transfer(ref: str | None = "ord-1", **fields: Any) -> TransferRequested:
    """A law-enforcement transfer to agency-1 under ``ref`` for a legal order."""
    fields.setdefault("recipient", "agency-1")
    fields.setdefault("rtype", RecipientType.LAW_ENFORCEMENT)
    fields.setdefault("purpose", Purpose.LEGAL_ORDER)
    return transfer(order_ref=ref, **fields)


__all__ = [
    "T0",
    "Event",
    "approve",
    "at",
    "consent",
    "deregister",
    "le_transfer",
    "order",
    "register",
    "revoke",
    "rights",
    "transfer",
]
