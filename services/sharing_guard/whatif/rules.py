"""What differs between two policies, rule by rule, and which rules explain a change (pure).

:func:`policy_changes` compares a baseline and a candidate policy
(:class:`~sharing_guard.core.policy.Policy`) field by field and returns one
:class:`RuleChange` per rule that differs, in words a person reads
(``child_age_limit: 13 -> 16``, ``appropriate_jurisdictions: + DE``,
``recipient_types.AGENT.purposes: + DATA_ANALYSIS``). Each change is tagged with the reason
codes it can add or remove and the recipient types it can affect, so that
:func:`explain_change` can pick, for one group of changed decisions, the rules of the
candidate that made the difference, and say so when none did (a knock-on effect, such as a
quota spent by other decisions that changed).
"""

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from sharing_guard.contract.enums import ALLOW_BASES, ReasonCode, RecipientType
from sharing_guard.core.policy import Policy

K = TypeVar("K", bound=StrEnum)

ALL_TYPES = frozenset(RecipientType)
_LE = frozenset({RecipientType.LAW_ENFORCEMENT})

_ORDER_VALIDITY_CODES = frozenset({ReasonCode.ORDER_JURISDICTION, ReasonCode.ORDER})
_EXEMPT_UNDER_A_VALID_ORDER = (ReasonCode.PROCESSING_RESTRICTED, ReasonCode.CHILD_DATA)


@dataclass(frozen=True, slots=True)
class RuleChange:
    """One rule of the policy that differs between the baseline and the candidate.

    ``codes`` are the reason codes the rule decides (a change of the rule can add or remove
    them); ``types`` the recipient types it applies to. Text-only changes (the wording of
    a clause or a code) decide nothing: their ``codes`` are empty.
    """

    rule: str
    change: str
    codes: frozenset[ReasonCode]
    types: frozenset[RecipientType]

    @property
    def text(self) -> str:
        """``rule: change``, e.g. ``child_age_limit: 13 -> 16``."""
        return f"{self.rule}: {self.change}"


def _set_change(before: Collection[str], after: Collection[str]) -> str:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    return ", ".join([*(f"+ {v}" for v in added), *(f"- {v}" for v in removed)])


def _basis(code: ReasonCode | None) -> str:
    return "none" if code is None else code.value


def _follows_processor_purposes(policy: Policy, rtype: RecipientType) -> bool:
    return policy.purposes_by_type.get(rtype) == policy.processor_purposes


def policy_changes(baseline: Policy, candidate: Policy) -> list[RuleChange]:
    """Every rule that differs from ``baseline`` to ``candidate``, in the policy file's order
    (name, jurisdictions, child age, processor purposes, then each recipient type's purposes,
    registration and basis, then wording). Empty when they decide and read alike."""
    found: list[RuleChange] = []
    if baseline.name != candidate.name:
        found.append(
            RuleChange("name", f"{baseline.name} -> {candidate.name}", frozenset(), frozenset())
        )
    if baseline.appropriate_jurisdictions != candidate.appropriate_jurisdictions:
        found.append(
            RuleChange(
                "appropriate_jurisdictions",
                _set_change(
                    baseline.appropriate_jurisdictions, candidate.appropriate_jurisdictions
                ),
                _ORDER_VALIDITY_CODES,
                _LE,
            )
        )
    if baseline.child_age_limit != candidate.child_age_limit:
        found.append(
            RuleChange(
                "child_age_limit",
                f"{baseline.child_age_limit} -> {candidate.child_age_limit}",
                frozenset({ReasonCode.CHILD_DATA}),
                ALL_TYPES,
            )
        )
    shared = frozenset(
        t
        for t in RecipientType
        if _follows_processor_purposes(baseline, t) and _follows_processor_purposes(candidate, t)
    )
    if baseline.processor_purposes != candidate.processor_purposes and shared:
        found.append(
            RuleChange(
                "processor_purposes",
                _set_change(baseline.processor_purposes, candidate.processor_purposes),
                frozenset({ReasonCode.PURPOSE_NOT_PERMITTED}),
                shared,
            )
        )
    for rtype in RecipientType:
        found.extend(_type_changes(baseline, candidate, rtype, covered=rtype in shared))
    found.extend(_text_changes("clauses", baseline.clause_texts, candidate.clause_texts))
    found.extend(_text_changes("codes", baseline.code_texts, candidate.code_texts))
    return found


def _text_changes(what: str, before: Mapping[K, str], after: Mapping[K, str]) -> list[RuleChange]:
    """The wordings that differ: they decide nothing (no codes, no types)."""
    return [
        RuleChange(f"{what}.{key.value}", "text changed", frozenset(), frozenset())
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


def _type_changes(
    baseline: Policy, candidate: Policy, rtype: RecipientType, *, covered: bool
) -> list[RuleChange]:
    """The changes of one recipient type's rule; ``covered``: its purposes follow
    ``processor_purposes`` on both sides, so that change is reported there."""
    prefix = f"recipient_types.{rtype.value}"
    only = frozenset({rtype})
    found: list[RuleChange] = []
    before = baseline.purposes_by_type.get(rtype, frozenset())
    after = candidate.purposes_by_type.get(rtype, frozenset())
    if before != after and not covered:
        found.append(
            RuleChange(
                f"{prefix}.purposes",
                _set_change(before, after),
                frozenset({ReasonCode.PURPOSE_NOT_PERMITTED}),
                only,
            )
        )
    was = rtype in baseline.registration_required
    now = rtype in candidate.registration_required
    if was != now:
        found.append(
            RuleChange(
                f"{prefix}.registration_required",
                f"{str(was).lower()} -> {str(now).lower()}",
                # Registration also brings the registered permitted purposes into play.
                frozenset({ReasonCode.RECIPIENT_NOT_REGISTERED, ReasonCode.PURPOSE_NOT_PERMITTED}),
                only,
            )
        )
    old_basis, new_basis = baseline.basis_by_type.get(rtype), candidate.basis_by_type.get(rtype)
    if old_basis != new_basis:
        codes = {ReasonCode.NO_LEGAL_BASIS}
        codes.update(c for c in (old_basis, new_basis) if c is not None)
        found.append(
            RuleChange(
                f"{prefix}.basis",
                f"{_basis(old_basis)} -> {_basis(new_basis)}",
                frozenset(codes),
                only,
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why one group of decisions changes: the rules of the candidate behind it, and notes
    for what no rule explains."""

    rules: tuple[str, ...]
    notes: tuple[str, ...]


def explain_change(
    changes: Iterable[RuleChange],
    old_codes: Collection[ReasonCode],
    new_codes: Collection[ReasonCode],
    types: Collection[RecipientType],
    *,
    other_versions: Collection[str] = (),
) -> Explanation:
    """The rules among ``changes`` that made decisions to recipients of ``types`` go from
    ``old_codes`` to ``new_codes``.

    The codes that appear on one side only are what changed; block codes among them say
    more than allow bases (a basis gained or lost follows from the blocks), so they are
    matched first. A change of the appropriate jurisdictions also explains the child and
    restriction blocks a law-enforcement transfer gains or loses with its order's validity
    (a valid order exempts it from them). A code that no rule decides gets a note:
    ``ORDER_QUOTA_EXHAUSTED`` follows from an order's quota spent by other decisions that
    change;
    ``other_versions`` (the policy versions of recorded decisions that are not the
    baseline file's) are named when the difference may come from them.
    """
    changes = list(changes)
    differing = set(old_codes) ^ set(new_codes)
    blocks = differing - ALLOW_BASES
    wanted = blocks or differing
    kinds = set(types)
    rules: list[str] = []
    explained: set[ReasonCode] = set()
    for change in changes:
        hit = change.codes & wanted
        if hit and change.types & kinds:
            rules.append(change.text)
            explained |= hit
    notes: list[str] = []
    if ReasonCode.ORDER_JURISDICTION in explained:
        # The order became valid (or stopped being): its exemptions follow.
        for code in _EXEMPT_UNDER_A_VALID_ORDER:
            if code in wanted and code not in explained:
                explained.add(code)
                notes.append(
                    f"{code.value}: follows from the order's validity (a valid order "
                    "exempts a law-enforcement transfer from it)"
                )
    if not differing:
        notes.append("the same reason codes: their clauses or the order reference differ")
    for code in sorted(wanted - explained, key=list(ReasonCode).index):
        if code is ReasonCode.ORDER_QUOTA_EXHAUSTED:
            notes.append(
                "ORDER_QUOTA_EXHAUSTED: no rule of its own; the order's quota is spent "
                "differently because other decisions under it change"
            )
        elif other_versions:
            notes.append(
                f"{code.value}: no rule of the baseline file differs for it; the recorded "
                f"decisions were made under {', '.join(sorted(other_versions))}"
            )
        else:
            notes.append(f"{code.value}: no rule of the candidate differs for it")
    return Explanation(tuple(rules), tuple(notes))
