"""A decision rendered for a person: outcome, and each reason in words with its clause."""

from sharing_guard.contract.decision import Decision
from sharing_guard.core.policy import Policy


def explain(decision: Decision, policy: Policy) -> str:
    """Several lines of plain text describing ``decision`` under ``policy``.

    The policy supplies the wording; each code's text and each clause's summary are
    given once, under the first reason that has them (a basis that rests on two clauses,
    such as a processor's promotional offer under the marketing consent, shows its text
    once and each clause).
    """
    header = f"{decision.event_id}: {decision.outcome.value}"
    if decision.order_ref is not None:
        header += f" (order {decision.order_ref})"
    lines = [header]
    cited: set[str] = set()
    worded: set[str] = set()
    for item in decision.reasons:
        text = "" if item.code in worded else policy.code_texts.get(item.code, "")
        worded.add(item.code)
        lines.append(f"  - {item.code.value} [{item.clause.value}] {text}".rstrip())
        clause_text = policy.clause_texts.get(item.clause)
        if clause_text and item.clause not in cited:
            cited.add(item.clause)
            lines.append(f"      {item.clause.value}: {clause_text}")
    lines.append(f"  policy {decision.policy_version}")
    return "\n".join(lines)
