"""The governance state of history under two policies at once (pure: memory only, no I/O).

Re-deciding history under a candidate policy needs the state each side would have built:
consents, recipients and data-subject rights follow the governance events alone, so both
sides share them; orders differ, because a transfer allowed under an order spends one of
its disclosures, and the two sides allow different transfers. :class:`TwoSides` keeps the
shared tables once and each side's orders apart, and decides every transfer with the same
engine as ``replay`` (:func:`~sharing_guard.core.engine.gather_facts`,
:func:`~sharing_guard.core.engine.evaluate`, the reducers of
:mod:`sharing_guard.core.state`), following :func:`sharing_guard.core.ledger.step`:
idempotency by ``event_id``, a reuse of an id by another event type refused, a fault in
evaluation blocking with ``GUARD_ERROR``. The facts are gathered once per transfer and
shared by the sides but for the order.

The *old* side spends disclosures as the decision that was enforced did: the recorded
decision when the line carries one, else the baseline's. The state lives in plain
dictionaries (this runs once over a history, nothing needs an earlier version of it).
"""

from typing import Any, NamedTuple

from sharing_guard.contract.decision import Decision
from sharing_guard.contract.enums import Outcome
from sharing_guard.contract.events import GovernanceEvent, TransferRequested
from sharing_guard.core.engine import evaluate, gather_facts, guard_error
from sharing_guard.core.ledger import EventIdConflictError
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
from sharing_guard.whatif.lines import Recorded

_TRANSFER = "TransferRequested"
_ALLOW = Outcome.ALLOW


class _View:
    """Read access to one side's state, as :func:`gather_facts` asks for it."""

    __slots__ = ("_consents", "_orders", "_recipients", "_rights")

    def __init__(
        self,
        consents: dict[str, ConsentState],
        recipients: dict[str, RecipientState],
        rights: dict[str, RightsState],
        orders: dict[str, OrderState],
    ) -> None:
        self._consents = consents
        self._recipients = recipients
        self._rights = rights
        self._orders = orders

    def recipient(self, recipient_id: str) -> RecipientState | None:
        """The registered recipient, or ``None``."""
        return self._recipients.get(recipient_id)

    def consent(self, key: str) -> ConsentState | None:
        """The latest consent for the key, or ``None``."""
        return self._consents.get(key)

    def rights(self, account_id: str) -> RightsState | None:
        """Rights exercised on the account, or ``None``."""
        return self._rights.get(account_id)

    def order(self, order_ref: str) -> OrderState | None:
        """The registered order, or ``None``."""
        return self._orders.get(order_ref)


class Outcomes(NamedTuple):
    """One transfer decided under both sides.

    ``old`` is what the old side enforced (the recorded decision, else ``baseline``);
    ``baseline`` is the baseline policy's decision, ``None`` when it was not needed (a
    recorded decision made under another policy version)."""

    old: Decision | Recorded
    baseline: Decision | None
    new: Decision


def _spend(orders: dict[str, OrderState], decision: Decision | Recorded) -> None:
    ref = decision.order_ref
    if decision.outcome is _ALLOW and ref is not None:
        order = orders.get(ref)
        if order is not None:  # a trail that starts after the order's registration
            orders[ref] = with_disclosure(order)


class TwoSides:
    """The state of one history under the old side (baseline or recorded) and the candidate."""

    def __init__(self, baseline: Policy, candidate: Policy) -> None:
        """Empty state; decisions under ``baseline`` and ``candidate``."""
        self.baseline = baseline
        self.candidate = candidate
        self._consents: dict[str, ConsentState] = {}
        self._recipients: dict[str, RecipientState] = {}
        self._rights: dict[str, RightsState] = {}
        self._old_orders: dict[str, OrderState] = {}
        self._new_orders: dict[str, OrderState] = {}
        self._seen: dict[str, str] = {}
        self._tables: dict[StateTable, dict[str, Any]] = {
            StateTable.CONSENTS: self._consents,
            StateTable.RECIPIENTS: self._recipients,
            StateTable.RIGHTS: self._rights,
        }
        self._old_view = _View(self._consents, self._recipients, self._rights, self._old_orders)

    def seen(self, event_id: str, event_type: str) -> bool:
        """Whether ``event_id`` was processed before (a repeat, which changes nothing).

        Raises :class:`EventIdConflictError` when it was used by an event of another type.
        """
        prior = self._seen.get(event_id)
        if prior is None:
            return False
        if prior != event_type:
            raise EventIdConflictError(
                f"event_id was already used by a {prior} event, not a {event_type}"
            )
        return True

    def apply(self, event: GovernanceEvent) -> None:
        """A governance event not seen before: the same change on both sides."""
        change = state_change(event)
        if change.table is StateTable.ORDERS:
            tables: tuple[dict[str, Any], ...] = (self._old_orders, self._new_orders)
        else:
            tables = (self._tables[change.table],)
        key = change.key
        for table in tables:
            record = change.advance(table.get(key))
            if record is None:
                table.pop(key, None)
            else:
                table[key] = record
        self._seen[event.event_id] = event.type

    def decide(self, transfer: TransferRequested, recorded: Recorded | None) -> Outcomes:
        """A transfer not seen before, decided under both sides, each side's quota spent.

        The baseline decides unless the recorded decision was made under another policy
        version (then only the recorded decision stands for the old side)."""
        baseline, candidate = self.baseline, self.candidate
        self._seen[transfer.event_id] = _TRANSFER
        try:
            facts = gather_facts(transfer, self._old_view)
        except Exception:  # fail closed, as replay does
            failed = guard_error(transfer.event_id, baseline)
            _spend(self._old_orders, failed if recorded is None else recorded)
            return Outcomes(
                failed if recorded is None else recorded,
                failed,
                guard_error(transfer.event_id, candidate),
            )
        ref = transfer.order_ref
        new_facts = facts if ref is None else facts._replace(order=self._new_orders.get(ref))
        base: Decision | None = None
        if recorded is None or recorded.policy_version == baseline.version:
            try:
                base = evaluate(transfer, facts, baseline)
            except Exception:
                base = guard_error(transfer.event_id, baseline)
        try:
            new = evaluate(transfer, new_facts, candidate)
        except Exception:
            new = guard_error(transfer.event_id, candidate)
        old: Decision | Recorded
        if recorded is None:
            assert base is not None
            old = base
        else:
            old = recorded
        _spend(self._old_orders, old)
        _spend(self._new_orders, new)
        return Outcomes(old, base, new)

    def sealed(self, event_id: str, event_type: str, recorded: Recorded | None) -> None:
        """An entry that cannot be re-decided: its recorded decision stands on both sides
        (an ALLOW under an order spent a disclosure there, whatever the candidate would
        have said); a governance change it stands for is unknown and changes nothing."""
        self._seen[event_id] = event_type
        if recorded is not None:
            _spend(self._old_orders, recorded)
            _spend(self._new_orders, recorded)
