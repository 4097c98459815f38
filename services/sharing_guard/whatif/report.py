"""The what-if report: one JSON-ready dict for a pipeline, the same as text for a person (pure).

:func:`build_report` turns a :class:`~sharing_guard.whatif.tally.Tally` and the two policies
into the report documented in ``docs/policy-change.md`` ("What-if over history"), with the
rules of the candidate behind each group of changes
(:func:`~sharing_guard.whatif.rules.explain_change`). :func:`render_text` writes that dict for
a person. The report holds counts, event ids, recipient ids and types, purposes, codes,
clauses and policy versions: never an account id or any other value of an event.
"""

from collections import Counter
from collections.abc import Mapping
from typing import Any

from sharing_guard.core.policy import Policy
from sharing_guard.whatif.rules import RuleChange, explain_change, policy_changes
from sharing_guard.whatif.tally import Group, Side, Tally

REPORT_VERSION = 1
_SHOWN = 10
_SUMMARY_GROUPS = 20
_SUMMARY_TOTALS = (
    "transfers",
    "changed",
    "allow_to_block",
    "block_to_allow",
    "unchanged",
    "not_reproduced",
    "sealed_decisions",
    "invalid_lines",
)


def _counts(counter: Counter[Any]) -> dict[str, int]:
    """Most frequent first, then by name: a stable order for a diff of two reports."""
    items = sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return {str(key): count for key, count in items}


def _side(side: Side) -> dict[str, Any]:
    outcome, codes = side
    return {"outcome": outcome.value, "codes": [c.value for c in codes]}


def _group(group: Group, changes: list[RuleChange], baseline: Policy) -> dict[str, Any]:
    other = {v for v in group.recorded_versions if v != baseline.version}
    why = explain_change(
        changes, group.old[1], group.new[1], set(group.recipient_types), other_versions=other
    )
    return {
        "from": _side(group.old),
        "to": _side(group.new),
        "count": group.count,
        "rules": list(why.rules),
        "notes": list(why.notes),
        "by_recipient_type": _counts(group.recipient_types),
        "by_recipient_id": _counts(group.recipient_ids),
        "by_purpose": _counts(group.purposes),
        "by_clause": _counts(group.clauses),
        "examples": list(group.examples),
        "recorded": group.recorded,
        "recorded_policy_versions": _counts(group.recorded_versions),
    }


def _unreproduced(group: Group) -> dict[str, Any]:
    return {
        "recorded": _side(group.old),
        "baseline": _side(group.new),
        "count": group.count,
        "by_recipient_type": _counts(group.recipient_types),
        "by_recipient_id": _counts(group.recipient_ids),
        "by_purpose": _counts(group.purposes),
        "examples": list(group.examples),
    }


def _order(groups: Mapping[tuple[Side, Side], Group]) -> list[Group]:
    return sorted(groups.values(), key=lambda g: (-g.count, str(_side(g.old)), str(_side(g.new))))


def _summary(
    totals: Mapping[str, int], changes: list[RuleChange], groups: list[dict[str, Any]]
) -> dict[str, Any]:
    """What a promotion keeps of the report (``sharing-guard policy promote --what-if``):
    the counts, the rules changed and the largest groups (no event id), a few kilobytes."""
    return {
        **{key: totals[key] for key in _SUMMARY_TOTALS},
        "rules_changed": [c.text for c in changes],
        "changes": [
            {"from": _words(g["from"]), "to": _words(g["to"]), "count": g["count"]}
            for g in groups[:_SUMMARY_GROUPS]
        ],
        "more_groups": max(0, len(groups) - _SUMMARY_GROUPS),
    }


def build_report(
    tally: Tally,
    baseline: Policy,
    candidate: Policy,
    *,
    baseline_source: str,
    candidate_source: str,
) -> dict[str, Any]:
    """The report of a what-if run (``*_source``: where each policy came from, as given)."""
    changes = policy_changes(baseline, candidate)
    other_versions = {v: n for v, n in tally.recorded_versions.items() if v != baseline.version}
    notes: list[str] = []
    if baseline.version == candidate.version:
        notes.append("the candidate is the baseline policy (the same policy version)")
    elif not changes:
        notes.append("the candidate differs from the baseline in no rule or wording it holds")
    if other_versions:
        notes.append(
            f"{sum(other_versions.values())} recorded decisions were made under another policy "
            f"than the baseline file ({', '.join(sorted(other_versions))}): their changes are "
            "explained against the baseline file"
        )
    if tally.not_reproduced:
        notes.append(
            f"{tally.not_reproduced} recorded decisions are not reproduced by the baseline "
            "under their own policy version: the history lacks something they depended on "
            "(governance changes of erased accounts, events before the history began); they "
            "are not compared"
        )
    groups = [_group(g, changes, baseline) for g in _order(tally.groups)]
    totals = {
        "lines": tally.lines,
        "transfers": tally.transfers,
        "changed": tally.changed,
        "allow_to_block": tally.allow_to_block,
        "block_to_allow": tally.block_to_allow,
        "unchanged": tally.unchanged,
        "not_reproduced": tally.not_reproduced,
        "repeated": tally.repeated,
        "governance_changes": tally.governance,
        "sealed_decisions": tally.sealed_decisions,
        "sealed_governance_changes": tally.sealed_governance,
        "invalid_lines": tally.invalid,
    }
    return {
        "report": "sharing-guard what-if",
        "version": REPORT_VERSION,
        "baseline_version": baseline.version,
        "candidate_version": candidate.version,
        "summary": _summary(totals, changes, groups),
        "baseline": {"policy_version": baseline.version, "source": baseline_source},
        "candidate": {"policy_version": candidate.version, "source": candidate_source},
        "policy_changes": [{"rule": c.rule, "change": c.change} for c in changes],
        "totals": totals,
        "sealed_reasons": _counts(tally.sealed_reasons),
        "old_side": {
            "recorded": tally.recorded,
            "baseline": tally.transfers - tally.recorded,
            "recorded_policy_versions": _counts(tally.recorded_versions),
            "recorded_under_other_versions": sum(other_versions.values()),
        },
        "changes": groups,
        "not_reproduced": [_unreproduced(g) for g in _order(tally.unreproduced)],
        "notes": notes,
    }


# -- text ------------------------------------------------------------------------------------


def _words(side: Mapping[str, Any]) -> str:
    return " ".join([side["outcome"], *side["codes"]])


def _top(counts: Mapping[str, int]) -> str:
    shown = [f"{key} {n:,}" for key, n in list(counts.items())[:_SHOWN]]
    rest = len(counts) - _SHOWN
    return ", ".join(shown) + (f" (+{rest} more)" if rest > 0 else "")


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def render_text(report: Mapping[str, Any]) -> str:
    """The report for a person: what the candidate changes, totals, then each group."""
    base, cand, totals = report["baseline"], report["candidate"], report["totals"]
    out = [
        f"what-if: candidate {cand['policy_version']} ({cand['source']})",
        f"     against baseline {base['policy_version']} ({base['source']})",
    ]
    rules = [f"{c['rule']}: {c['change']}" for c in report["policy_changes"]]
    out.append("rules changed: " + ("; ".join(rules) if rules else "none"))
    out.append("")
    out.append(f"history: {_plural(totals['lines'], 'line')}")
    out.append(
        f"  {_plural(totals['transfers'], 'transfer')} re-decided: {totals['changed']:,} "
        f"changed, {totals['unchanged']:,} unchanged"
        + (
            f", {totals['not_reproduced']:,} not reproduced by the baseline (not compared)"
            if totals["not_reproduced"]
            else ""
        )
    )
    if totals["changed"]:
        out.append(
            f"    of the changes: {totals['allow_to_block']:,} ALLOW -> BLOCK, "
            f"{totals['block_to_allow']:,} BLOCK -> ALLOW, "
            f"{totals['changed'] - totals['allow_to_block'] - totals['block_to_allow']:,} "
            "with other reasons only"
        )
    old = report["old_side"]
    if old["recorded"]:
        versions = ", ".join(f"{v} {n:,}" for v, n in old["recorded_policy_versions"].items())
        out.append(
            f"  old side: the recorded decision for {old['recorded']:,} ({versions}), "
            f"the baseline's for {old['baseline']:,}"
        )
    out.append(f"  {_plural(totals['governance_changes'], 'governance change')} applied")
    if totals["repeated"]:
        out.append(f"  {_plural(totals['repeated'], 'repeated event')} (first decision kept)")
    sealed = totals["sealed_decisions"], totals["sealed_governance_changes"]
    if any(sealed):
        reasons = report["sealed_reasons"]
        whose = "of erased accounts" if set(reasons) == {"erased"} else "sealed in the trail"
        out.append(
            f"  {_plural(sealed[0], 'decision')} {whose} not re-decided, "
            f"{_plural(sealed[1], 'governance change')} {whose} not applied"
            + ("" if whose.startswith("of") else f" ({_top(reasons)})")
        )
    if totals["invalid_lines"]:
        out.append(f"  {_plural(totals['invalid_lines'], 'invalid line')} (reported on stderr)")
    for note in report["notes"]:
        out.append(f"note: {note}")
    out.append("")
    if not report["changes"]:
        out.append("No decision of this history changes under the candidate.")
    else:
        out.append(f"{_plural(totals['changed'], 'decision changes', 'decisions change')}:")
        for n, group in enumerate(report["changes"], start=1):
            out.extend(_group_text(n, group))
    for group in report["not_reproduced"]:
        out.append("")
        out.append(
            f"not reproduced: recorded {_words(group['recorded'])}, baseline "
            f"{_words(group['baseline'])}: {group['count']:,}"
        )
        out.append(f"    recipient types: {_top(group['by_recipient_type'])}")
        out.append(f"    examples: {', '.join(group['examples'])}")
    return "\n".join(out) + "\n"


def _group_text(n: int, group: Mapping[str, Any]) -> list[str]:
    lines = [
        "",
        f"[{n}] {_words(group['from'])}  ->  {_words(group['to'])}: {group['count']:,}",
    ]
    lines.extend(f"    rule: {rule}" for rule in group["rules"])
    lines.extend(f"    note: {note}" for note in group["notes"])
    lines.append(f"    recipient types: {_top(group['by_recipient_type'])}")
    lines.append(f"    recipients: {_top(group['by_recipient_id'])}")
    lines.append(f"    purposes: {_top(group['by_purpose'])}")
    lines.append(f"    clauses: {_top(group['by_clause'])}")
    if group["recorded"]:
        versions = ", ".join(group["recorded_policy_versions"])
        lines.append(f"    old side recorded for {group['recorded']:,} (policy {versions})")
    if group["examples"]:
        lines.append(f"    examples: {', '.join(group['examples'])}")
    return lines
