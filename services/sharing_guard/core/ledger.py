"""The whole governance state as one immutable value, and the step function over events.

:func:`step` is the engine as ``sharing-guard replay`` and the tests run it: governance
events advance the state, a transfer is decided on the state seen before it, an allowed
transfer under an order spends one disclosure, and a repeated ``event_id`` returns the
first outcome and changes nothing.
"""

from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from immutables import Map

from sharing_guard.contract.decision import Decision
from sharing_guard.contract.enums import Outcome
from sharing_guard.contract.events import Event, GovernanceEvent, TransferRequested
from sharing_guard.core.engine import evaluate, gather_facts
from sharing_guard.core.policy import Policy
from sharing_guard.core.state import (
    ConsentState,
    OrderState,
    RecipientState,
    RightsState,
    StateTable,
    state_change,
    with_disclosure,
)


class EventIdConflictError(ValueError):
    """An ``event_id`` already used by an event of another type: it is not a redelivery."""


def _empty() -> Map[Any, Any]:
    return Map()


@dataclass(frozen=True, slots=True)
class GovernanceState:
    """Everything the guard has seen, as persistent maps (cheap to copy on change).

    ``seen`` maps each processed ``event_id`` to its decision (transfers) or its event
    type name (governance events), for idempotency.
    """

    consents: Map[str, ConsentState] = field(default_factory=_empty)
    recipients: Map[str, RecipientState] = field(default_factory=_empty)
    rights_by_account: Map[str, RightsState] = field(default_factory=_empty)
    orders: Map[str, OrderState] = field(default_factory=_empty)
    seen: Map[str, Decision | str] = field(default_factory=_empty)

    def recipient(self, recipient_id: str) -> RecipientState | None:
        """The registered recipient, or ``None``."""
        return self.recipients.get(recipient_id)

    def consent(self, key: str) -> ConsentState | None:
        """The latest consent for the key, or ``None``."""
        return self.consents.get(key)

    def rights(self, account_id: str) -> RightsState | None:
        """Rights exercised on the account, or ``None``."""
        return self.rights_by_account.get(account_id)

    def order(self, order_ref: str) -> OrderState | None:
        """The registered order, or ``None``."""
        return self.orders.get(order_ref)


_FIELD_OF = {
    StateTable.CONSENTS: "consents",
    StateTable.RECIPIENTS: "recipients",
    StateTable.RIGHTS: "rights_by_account",
    StateTable.ORDERS: "orders",
}


def apply(state: GovernanceState, event: GovernanceEvent) -> GovernanceState:
    """The state after one governance event (no idempotency check; see :func:`step`)."""
    change = state_change(event)
    name = _FIELD_OF[change.table]
    mapping: Map[str, Any] = getattr(state, name)
    record = change.advance(mapping.get(change.key))
    if record is None:
        mapping = mapping.delete(change.key) if change.key in mapping else mapping
    else:
        mapping = mapping.set(change.key, record)
    return replace(state, **{name: mapping})


def decide(
    state: GovernanceState, transfer: TransferRequested, policy: Policy
) -> tuple[GovernanceState, Decision]:
    """Decide a new transfer and record its effects (no idempotency check; see :func:`step`).

    An ALLOW under an order spends one of its disclosures.
    """
    decision = evaluate(transfer, gather_facts(transfer, state), policy)
    orders = state.orders
    if decision.outcome is Outcome.ALLOW and decision.order_ref is not None:
        orders = orders.set(decision.order_ref, with_disclosure(orders[decision.order_ref]))
    # Built directly rather than with dataclasses.replace: this runs once per transfer.
    next_state = GovernanceState(
        state.consents,
        state.recipients,
        state.rights_by_account,
        orders,
        state.seen.set(transfer.event_id, decision),
    )
    return next_state, decision


class Step(NamedTuple):
    """The result of one event: the next state, the decision for a transfer, and whether
    the event was a redelivery (an ``event_id`` seen before)."""

    state: GovernanceState
    decision: Decision | None
    duplicate: bool


def step(state: GovernanceState, event: Event, policy: Policy) -> Step:
    """Process one event in order, idempotently by ``event_id``.

    Raises :class:`EventIdConflictError` (changing nothing) when the id was used by an
    event of another type.
    """
    prior = state.seen.get(event.event_id)
    if prior is not None:
        prior_type = "TransferRequested" if isinstance(prior, Decision) else prior
        if prior_type != event.type:
            raise EventIdConflictError(
                f"event_id was already used by a {prior_type} event, not a {event.type}"
            )
        return Step(state, prior if isinstance(prior, Decision) else None, duplicate=True)
    if isinstance(event, TransferRequested):
        new_state, decision = decide(state, event, policy)
        return Step(new_state, decision, duplicate=False)
    new_state = apply(state, event)
    return Step(
        replace(new_state, seen=new_state.seen.set(event.event_id, event.type)), None, False
    )
