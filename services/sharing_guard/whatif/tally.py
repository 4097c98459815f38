"""Comparing each transfer's old and new decision, and counting what changes (pure).

A decision *changes* when its outcome, its reasons (codes and clauses, in order) or its
order reference differ; the policy version alone does not count. Changed decisions are
grouped by (old outcome and codes, new outcome and codes); each :class:`Group` counts its
decisions by recipient id, recipient type, purpose and clause (the clauses of the reasons
found on one side only), and keeps the first event ids as examples. Nothing here holds an
account id.

A recorded decision made under the baseline file's own policy version that the baseline
does not reproduce is *not reproduced*: the history lacks something that decision depended
on (governance changes of an erased account, sealed in the trail; events before the trail
began; another guard). It is counted and grouped apart, never reported as a change the
candidate makes.
"""

from collections import Counter
from dataclasses import dataclass, field

from sharing_guard.contract.decision import Decision
from sharing_guard.contract.enums import Clause, Outcome, Purpose, ReasonCode, RecipientType
from sharing_guard.contract.events import TransferRequested
from sharing_guard.whatif.lines import Recorded
from sharing_guard.whatif.sides import Outcomes

Side = tuple[Outcome, tuple[ReasonCode, ...]]
"""An outcome with its reason codes in order: one side of a group."""


def _side(decision: Decision | Recorded) -> Side:
    return decision.outcome, tuple(r.code for r in decision.reasons)


def same(a: Decision | Recorded, b: Decision | Recorded) -> bool:
    """Whether two decisions agree (outcome, reasons, order reference)."""
    return a.outcome is b.outcome and a.reasons == b.reasons and a.order_ref == b.order_ref


@dataclass
class Group:
    """Decisions that went from one outcome and codes to another, counted."""

    old: Side
    new: Side
    count: int = 0
    recipient_ids: Counter[str] = field(default_factory=Counter)
    recipient_types: Counter[RecipientType] = field(default_factory=Counter)
    purposes: Counter[Purpose] = field(default_factory=Counter)
    clauses: Counter[Clause] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    recorded: int = 0
    """How many had their recorded decision as the old side."""
    recorded_versions: Counter[str] = field(default_factory=Counter)
    """The policy versions of those recorded decisions."""

    def add(
        self,
        transfer: TransferRequested,
        old: Decision | Recorded,
        new: Decision,
        recorded: Recorded | None,
        examples: int,
    ) -> None:
        """Count one decision of the group."""
        self.count += 1
        self.recipient_ids[transfer.recipient.id] += 1
        self.recipient_types[transfer.recipient.type] += 1
        self.purposes[transfer.purpose] += 1
        self.clauses.update({r.clause for r in set(old.reasons) ^ set(new.reasons)})
        if len(self.examples) < examples:
            self.examples.append(transfer.event_id)
        if recorded is not None:
            self.recorded += 1
            self.recorded_versions[recorded.policy_version] += 1


@dataclass
class Tally:
    """Everything counted over one history."""

    examples: int = 5
    lines: int = 0
    """Non-blank lines read."""
    transfers: int = 0
    """Transfers re-decided (first deliveries): changed + unchanged + not reproduced."""
    changed: int = 0
    allow_to_block: int = 0
    block_to_allow: int = 0
    """Changes of outcome, among ``changed`` (the rest change their reasons only)."""
    unchanged: int = 0
    not_reproduced: int = 0
    repeated: int = 0
    """Lines repeating an ``event_id`` already processed: their first decision stands."""
    governance: int = 0
    sealed_decisions: int = 0
    sealed_governance: int = 0
    sealed_reasons: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    recorded: int = 0
    """Transfers whose old side is the decision recorded for them."""
    recorded_versions: Counter[str] = field(default_factory=Counter)
    groups: dict[tuple[Side, Side], Group] = field(default_factory=dict)
    unreproduced: dict[tuple[Side, Side], Group] = field(default_factory=dict)
    """Recorded -> baseline decision, for the transfers not reproduced."""

    def transfer(
        self, transfer: TransferRequested, outcomes: Outcomes, recorded: Recorded | None
    ) -> None:
        """Compare one re-decided transfer's sides and count it."""
        self.transfers += 1
        old, base, new = outcomes
        if recorded is not None:
            self.recorded += 1
            self.recorded_versions[recorded.policy_version] += 1
            if base is not None and not same(recorded, base):
                self.not_reproduced += 1
                self._group(self.unreproduced, transfer, recorded, base, recorded)
                return
        if same(old, new):
            self.unchanged += 1
            return
        self.changed += 1
        if old.outcome is not new.outcome:
            if new.outcome is Outcome.BLOCK:
                self.allow_to_block += 1
            else:
                self.block_to_allow += 1
        self._group(self.groups, transfer, old, new, recorded)

    def sealed(self, reason: str, decision: bool) -> None:
        """Count one sealed placeholder (a decision, or a governance change)."""
        if decision:
            self.sealed_decisions += 1
        else:
            self.sealed_governance += 1
        self.sealed_reasons[reason] += 1

    def _group(
        self,
        groups: dict[tuple[Side, Side], Group],
        transfer: TransferRequested,
        old: Decision | Recorded,
        new: Decision,
        recorded: Recorded | None,
    ) -> None:
        key = (_side(old), _side(new))
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(*key)
        group.add(transfer, old, new, recorded, self.examples)
