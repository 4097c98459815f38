"""Governance state as immutable records, and the pure functions that advance them.

Each record is what the guard knows about one key (a consent, a recipient, an account's
rights, an order). A reducer takes the current record (or ``None``) and one event and
returns the next record; it never mutates. Storage (an immutable map for replay, the
worker's local store for the stream) is the caller's concern.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from sharing_guard.contract.enums import (
    ConsentScope,
    ConsentStatus,
    DataCategory,
    OrderType,
    Purpose,
    RecipientType,
    SubjectRightsAction,
)
from sharing_guard.contract.events import (
    ConsentChanged,
    GovernanceEvent,
    OrderApproved,
    OrderRegistered,
    OrderRevoked,
    RecipientDeregistered,
    RecipientRegistered,
    SubjectRightsChanged,
)

KEY_SEPARATOR = "\x1f"


def consent_key(account_id: str, scope: ConsentScope, recipient_id: str | None) -> str:
    """The key of one consent: per account and scope, and per recipient for third parties."""
    return f"{account_id}{KEY_SEPARATOR}{scope.value}{KEY_SEPARATOR}{recipient_id or ''}"


@dataclass(frozen=True, slots=True)
class ConsentState:
    """The latest consent for one key, in processing order.

    ``granted_since`` is when the consent currently held was first given (the earliest
    ``occurred_at`` of the grants since the last withdrawal); ``None`` when withdrawn.
    """

    status: ConsentStatus
    granted_since: datetime | None


@dataclass(frozen=True, slots=True)
class RecipientState:
    """A registered recipient and what its agreement allows."""

    recipient_type: RecipientType
    jurisdiction: str
    permitted_purposes: frozenset[Purpose]
    agreement_ref: str


@dataclass(frozen=True, slots=True)
class RightsState:
    """Rights a data subject exercised on an account."""

    erased: bool = False
    restricted: bool = False


@dataclass(frozen=True, slots=True)
class OrderState:
    """A registered order, its approval, revocation and the disclosures made under it."""

    order_type: OrderType
    authority: str
    jurisdiction: str
    recipient_id: str
    account_ids: frozenset[str]
    data_categories: frozenset[DataCategory]
    valid_from: datetime
    valid_until: datetime
    max_disclosures: int | None
    registered_by: str
    approved_by: str | None = None
    revoked: bool = False
    disclosures: int = 0

    @property
    def exhausted(self) -> bool:
        """True when the quota is used up."""
        return self.max_disclosures is not None and self.disclosures >= self.max_disclosures


def next_consent(current: ConsentState | None, event: ConsentChanged) -> ConsentState:
    """Apply a consent change: the latest event wins; a repeated grant keeps the earlier start."""
    if event.status is ConsentStatus.WITHDRAWN:
        return ConsentState(ConsentStatus.WITHDRAWN, None)
    if current is not None and current.granted_since is not None:
        return ConsentState(ConsentStatus.GRANTED, min(current.granted_since, event.occurred_at))
    return ConsentState(ConsentStatus.GRANTED, event.occurred_at)


def next_recipient(
    current: RecipientState | None, event: RecipientRegistered | RecipientDeregistered
) -> RecipientState | None:
    """Register (or re-register with new terms) a recipient, or remove it."""
    if isinstance(event, RecipientDeregistered):
        return None
    return RecipientState(
        recipient_type=event.recipient_type,
        jurisdiction=event.jurisdiction,
        permitted_purposes=frozenset(event.permitted_purposes),
        agreement_ref=event.agreement_ref,
    )


def next_rights(current: RightsState | None, event: SubjectRightsChanged) -> RightsState:
    """Apply a data-subject right; erasure is final, restriction toggles."""
    rights = current or RightsState()
    if event.action is SubjectRightsAction.ERASURE_COMPLETED:
        return replace(rights, erased=True)
    return replace(rights, restricted=event.action is SubjectRightsAction.RESTRICTION_APPLIED)


def next_order(
    current: OrderState | None, event: OrderRegistered | OrderApproved | OrderRevoked
) -> OrderState | None:
    """Apply an order event.

    An order is registered once: a second registration under the same reference is
    ignored (it cannot reset approvals or the quota; a changed order needs a new
    reference). Approval counts only from an officer other than the one who registered
    it (four eyes). Approvals and revocations of unknown orders change nothing.
    Revocation is final.
    """
    if isinstance(event, OrderRegistered):
        if current is not None:
            return current
        return OrderState(
            order_type=event.order_type,
            authority=event.authority,
            jurisdiction=event.jurisdiction,
            recipient_id=event.recipient_id,
            account_ids=frozenset(event.account_ids),
            data_categories=frozenset(event.data_categories),
            valid_from=event.valid_from,
            valid_until=event.valid_until,
            max_disclosures=event.max_disclosures,
            registered_by=event.registered_by,
        )
    if current is None:
        return None
    if isinstance(event, OrderApproved):
        if current.approved_by is not None or event.approved_by == current.registered_by:
            return current
        return replace(current, approved_by=event.approved_by)
    return replace(current, revoked=True)


def with_disclosure(order: OrderState) -> OrderState:
    """The order after one more transfer was allowed under it."""
    return replace(order, disclosures=order.disclosures + 1)


class StateTable(StrEnum):
    """The four kinds of governance state, each keyed by its own id."""

    CONSENTS = "consents"
    RECIPIENTS = "recipients"
    RIGHTS = "rights"
    ORDERS = "orders"


StateRecord = ConsentState | RecipientState | RightsState | OrderState
"""Any governance state record."""


@dataclass(frozen=True, slots=True)
class StateChange:
    """What one governance event changes: which table, which key, and how.

    ``advance`` maps the current record (or ``None``) to the next one; ``None`` as a
    result means the key is removed.
    """

    table: StateTable
    key: str
    advance: Callable[[Any], StateRecord | None]


def state_change(event: GovernanceEvent) -> StateChange:
    """The change a governance event makes, for any store (immutable map or local store)."""
    if isinstance(event, ConsentChanged):
        key = consent_key(event.account_id, event.scope, event.recipient_id)
        return StateChange(StateTable.CONSENTS, key, lambda cur: next_consent(cur, event))
    if isinstance(event, RecipientRegistered | RecipientDeregistered):
        return StateChange(
            StateTable.RECIPIENTS, event.recipient_id, lambda cur: next_recipient(cur, event)
        )
    if isinstance(event, SubjectRightsChanged):
        return StateChange(StateTable.RIGHTS, event.account_id, lambda cur: next_rights(cur, event))
    return StateChange(StateTable.ORDERS, event.order_ref, lambda cur: next_order(cur, event))
