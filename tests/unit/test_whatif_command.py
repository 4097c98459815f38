"""``sharing-guard what-if``: a history re-decided under a candidate policy, through the command
line, as a reviewer runs it before a policy change goes live.

Each history is built so that the decisions a change flips are known in advance; the report
must find exactly those, with the rule behind them, and nothing else.
"""

import io
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from builders import approve, le_transfer, order, register, rights, transfer
from sharing_guard.cli import main
from sharing_guard.contract import (
    Decision,
    Event,
    Purpose,
    RecipientType,
    SubjectRightsAction,
)
from sharing_guard.core.policy import parse_policy
from sharing_guard.policy_file import load_policy
from sharing_guard.promotion import what_if_summary
from sharing_guard.replay import replay

BUNDLED_TEXT = (resources.files("sharing_guard") / "policy.toml").read_text(encoding="utf-8")
BASELINE = load_policy()
AGE_16 = ("child_age_limit = 13", "child_age_limit = 16")
PLUS_DE = ('appropriate_jurisdictions = ["CH"]', 'appropriate_jurisdictions = ["CH", "DE"]')
SECRET = "acc-SECRET-7781"
"""An account id that must never appear in what the command prints."""


def policy_file(path: Path, *edits: tuple[str, str]) -> Path:
    """The bundled policy with each ``(old, new)`` replaced, written to ``path``."""
    text = BUNDLED_TEXT
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    return path


def recorded_of(decision: Decision) -> dict[str, Any]:
    return {
        "outcome": decision.outcome.value,
        "reasons": [{"code": r.code.value, "clause": r.clause.value} for r in decision.reasons],
        "policy_version": decision.policy_version,
        "order_ref": decision.order_ref,
    }


def line(event: Event, recorded: dict[str, Any] | None = None) -> str:
    """An event's history line; with ``recorded`` last, as ``audit-sink history`` writes it."""
    text = event.model_dump_json()
    if recorded is None:
        return text
    return text[:-1] + ',"recorded":' + json.dumps(recorded, separators=(",", ":")) + "}"


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(text + "\n" for text in lines), encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["what-if", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    status, out, err = run(capsys, "--format", "json", *argv)
    return status, json.loads(out), err


# -- histories whose flips are known ---------------------------------------------------------

AGES = {"age-10": 10, "age-12": 12, "age-13": 13, "age-14": 14, "age-15": 15, "age-16": 16}


def ages_history() -> list[Event]:
    """A registered subcontractor and one transfer per age (and one of unknown age)."""
    return [
        register("rcp-1", RecipientType.SUBCONTRACTOR, (Purpose.DATA_ANALYSIS,)),
        *(
            transfer(event_id=event_id, subject_age=age, account=SECRET)
            for event_id, age in AGES.items()
        ),
        transfer(event_id="age-unknown", account=SECRET),
        transfer(event_id="age-40", subject_age=40, account=SECRET),
    ]


def orders_history() -> list[Event]:
    """A German order (quota 2) with three disclosures asked under it, and a Swiss one."""
    return [
        order("ord-de", jurisdiction="DE", max_disclosures=2, accounts=("acc-1", "acc-2")),
        approve("ord-de"),
        order("ord-ch", jurisdiction="CH", accounts=("acc-1",)),
        approve("ord-ch"),
        le_transfer("ord-de", event_id="de-1", minutes=10, account="acc-1"),
        le_transfer("ord-ch", event_id="ch-1", minutes=11, account="acc-1"),
        le_transfer("ord-de", event_id="de-2", minutes=12, account="acc-2"),
        le_transfer("ord-de", event_id="de-3", minutes=13, account="acc-1"),
    ]


def test_a_stricter_child_age_flips_exactly_the_allows_of_13_to_15_year_olds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = write(tmp_path / "h.jsonl", *(line(e) for e in ages_history()))
    candidate = policy_file(tmp_path / "candidate.toml", AGE_16)

    status, report, err = run_json(capsys, "--policy", str(candidate), str(history))

    assert (status, err) == (1, "")
    assert report["totals"] | {"lines": 0} == {
        "lines": 0,
        "transfers": 8,
        "changed": 3,
        "allow_to_block": 3,
        "block_to_allow": 0,
        "unchanged": 5,
        "not_reproduced": 0,
        "repeated": 0,
        "governance_changes": 1,
        "sealed_decisions": 0,
        "sealed_governance_changes": 0,
        "invalid_lines": 0,
    }
    [group] = report["changes"]
    assert group["from"] == {"outcome": "ALLOW", "codes": ["PROCESSOR"]}
    assert group["to"] == {"outcome": "BLOCK", "codes": ["CHILD_DATA"]}
    assert group["count"] == 3
    assert group["examples"] == ["age-13", "age-14", "age-15"]
    assert group["rules"] == ["child_age_limit: 13 -> 16"]
    assert group["notes"] == []
    assert group["by_recipient_type"] == {"SUBCONTRACTOR": 3}
    assert group["by_recipient_id"] == {"rcp-1": 3}
    assert group["by_purpose"] == {"DATA_ANALYSIS": 3}
    assert group["by_clause"] == {"C-CHILDREN": 3, "C-PROCESSOR-PURPOSE": 3}
    assert report["policy_changes"] == [{"rule": "child_age_limit", "change": "13 -> 16"}]
    assert report["candidate"]["policy_version"] == parse_policy(candidate.read_text()).version
    assert report["baseline"] == {"policy_version": BASELINE.version, "source": "bundled policy"}


def test_a_new_jurisdiction_allows_its_orders_and_spends_their_quota(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = write(tmp_path / "h.jsonl", *(line(e) for e in orders_history()))
    candidate = policy_file(tmp_path / "candidate.toml", PLUS_DE)

    status, report, _ = run_json(capsys, "--policy", str(candidate), str(history))

    assert status == 1
    assert report["totals"]["changed"] == 3
    assert report["totals"]["unchanged"] == 1  # the Swiss order's disclosure
    groups = {(tuple(g["from"]["codes"]), tuple(g["to"]["codes"])): g for g in report["changes"]}
    allowed = groups[("ORDER_JURISDICTION",), ("ORDER",)]
    assert allowed["examples"] == ["de-1", "de-2"]
    assert allowed["rules"] == ["appropriate_jurisdictions: + DE"]
    # The third disclosure under the German order now meets its quota of two.
    exhausted = groups[("ORDER_JURISDICTION",), ("ORDER_QUOTA_EXHAUSTED",)]
    assert exhausted["examples"] == ["de-3"]
    assert exhausted["rules"] == ["appropriate_jurisdictions: + DE"]
    assert exhausted["notes"][0].startswith("ORDER_QUOTA_EXHAUSTED: no rule of its own")
    assert len(groups) == 2


def test_a_change_that_flips_nothing_reports_none_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = write(tmp_path / "h.jsonl", *(line(e) for e in ages_history()))
    candidate = policy_file(tmp_path / "candidate.toml", PLUS_DE)  # no order in this history

    status, out, err = run(capsys, "--policy", str(candidate), str(history))

    assert (status, err) == (0, "")
    assert "rules changed: appropriate_jurisdictions: + DE" in out
    assert "8 transfers re-decided: 0 changed, 8 unchanged" in out
    assert "No decision of this history changes under the candidate." in out


def test_a_reformatted_commented_copy_of_the_baseline_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = ages_history() + orders_history()
    history = write(tmp_path / "h.jsonl", *(line(e) for e in events))
    copy = tmp_path / "copy.toml"
    copy.write_text(
        "# reviewed 2026-12-01, no change intended\n\n"
        + BUNDLED_TEXT.replace(" = ", "   =   ").replace("\n#", "\n\n# note:"),
        encoding="utf-8",
    )

    status, report, _ = run_json(capsys, "--policy", str(copy), str(history))

    assert status == 0
    assert report["candidate"]["policy_version"] == BASELINE.version
    assert report["policy_changes"] == []
    assert report["changes"] == []
    assert report["totals"]["unchanged"] == report["totals"]["transfers"] == 12
    assert report["notes"] == ["the candidate is the baseline policy (the same policy version)"]


def test_a_removed_basis_and_a_narrowed_purpose_list_name_their_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = [
        register(
            "agent-1", RecipientType.AGENT, (Purpose.DATA_ANALYSIS, Purpose.DOCUMENT_PROCESSING)
        ),
        transfer(event_id="analysis", recipient="agent-1", rtype=RecipientType.AGENT),
        transfer(
            event_id="documents",
            recipient="agent-1",
            rtype=RecipientType.AGENT,
            purpose=Purpose.DOCUMENT_PROCESSING,
        ),
        transfer(
            event_id="fraud",
            recipient="partner-1",
            rtype=RecipientType.FRAUD_PREVENTION_PARTNER,
            purpose=Purpose.FRAUD_PREVENTION,
            fraud_case_ref="case-1",
        ),
    ]
    history = write(tmp_path / "h.jsonl", *(line(e) for e in events))
    agent = '[recipient_types.AGENT]\nbasis = "PROCESSOR"\npurposes = "processor_purposes"'
    candidate = policy_file(
        tmp_path / "candidate.toml",
        (agent, '[recipient_types.AGENT]\nbasis = "PROCESSOR"\npurposes = ["DOCUMENT_PROCESSING"]'),
        ('basis = "FRAUD_PREVENTION"\n', ""),
    )

    status, report, _ = run_json(capsys, "--policy", str(candidate), str(history))

    assert status == 1
    found = {g["examples"][0]: (g["to"]["codes"], g["rules"]) for g in report["changes"]}
    assert found == {
        "analysis": (
            ["PURPOSE_NOT_PERMITTED"],
            [
                "recipient_types.AGENT.purposes: - CUSTOMER_COMMUNICATIONS, - DATA_ANALYSIS, "
                "- MARKETING_ASSISTANCE, - PAYMENT_PROCESSING, - PROMOTIONAL_OFFERS"
            ],
        ),
        "fraud": (
            ["NO_LEGAL_BASIS"],
            ["recipient_types.FRAUD_PREVENTION_PARTNER.basis: FRAUD_PREVENTION -> none"],
        ),
    }


# -- the report's forms ----------------------------------------------------------------------


def test_the_text_report_says_what_changes_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = write(tmp_path / "h.jsonl", *(line(e) for e in ages_history()))
    candidate = policy_file(tmp_path / "candidate.toml", AGE_16)

    status, out, _ = run(capsys, "--policy", str(candidate), "--examples", "2", str(history))

    assert status == 1
    assert out.splitlines()[:3] == [
        f"what-if: candidate {parse_policy(candidate.read_text()).version} ({candidate})",
        f"     against baseline {BASELINE.version} (bundled policy)",
        "rules changed: child_age_limit: 13 -> 16",
    ]
    assert "  8 transfers re-decided: 3 changed, 5 unchanged" in out
    assert (
        "    of the changes: 3 ALLOW -> BLOCK, 0 BLOCK -> ALLOW, 0 with other reasons only" in out
    )
    assert "3 decisions change:" in out
    assert "[1] ALLOW PROCESSOR  ->  BLOCK CHILD_DATA: 3" in out
    assert "    rule: child_age_limit: 13 -> 16" in out
    assert "    recipient types: SUBCONTRACTOR 3" in out
    assert "    clauses: C-CHILDREN 3, C-PROCESSOR-PURPOSE 3" in out
    assert "    examples: age-13, age-14" in out  # --examples 2


def test_the_json_report_has_its_documented_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = write(tmp_path / "h.jsonl", *(line(e) for e in orders_history()))
    candidate = policy_file(tmp_path / "candidate.toml", PLUS_DE)

    _, report, _ = run_json(capsys, "--policy", str(candidate), "--examples", "0", str(history))

    assert set(report) == {
        "report",
        "version",
        "baseline_version",
        "candidate_version",
        "summary",
        "baseline",
        "candidate",
        "policy_changes",
        "totals",
        "sealed_reasons",
        "old_side",
        "changes",
        "not_reproduced",
        "notes",
    }
    assert (report["report"], report["version"]) == ("sharing-guard what-if", 1)
    assert report["old_side"] == {
        "recorded": 0,
        "baseline": 4,
        "recorded_policy_versions": {},
        "recorded_under_other_versions": 0,
    }
    for group in report["changes"]:
        assert set(group) == {
            "from",
            "to",
            "count",
            "rules",
            "notes",
            "by_recipient_type",
            "by_recipient_id",
            "by_purpose",
            "by_clause",
            "examples",
            "recorded",
            "recorded_policy_versions",
        }
        assert group["examples"] == []  # --examples 0
    assert [g["count"] for g in report["changes"]] == [2, 1]  # most frequent first
    assert report["summary"] == {
        "transfers": 4,
        "changed": 3,
        "allow_to_block": 0,
        "block_to_allow": 2,
        "unchanged": 1,
        "not_reproduced": 0,
        "sealed_decisions": 0,
        "invalid_lines": 0,
        "rules_changed": ["appropriate_jurisdictions: + DE"],
        "changes": [
            {"from": "BLOCK ORDER_JURISDICTION", "to": "ALLOW ORDER", "count": 2},
            {"from": "BLOCK ORDER_JURISDICTION", "to": "BLOCK ORDER_QUOTA_EXHAUSTED", "count": 1},
        ],
        "more_groups": 0,
    }


def test_the_json_report_is_what_a_promotion_keeps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = write(tmp_path / "h.jsonl", *(line(e) for e in ages_history()))
    candidate = policy_file(tmp_path / "candidate.toml", AGE_16)
    _, out, _ = run(capsys, "--policy", str(candidate), "--format", "json", str(history))
    (tmp_path / "report.json").write_text(out, encoding="utf-8")

    kept = json.loads(what_if_summary(tmp_path / "report.json"))

    assert kept["candidate_version"] == parse_policy(candidate.read_text()).version
    assert kept["baseline_version"] == BASELINE.version
    assert (kept["summary"]["transfers"], kept["summary"]["changed"]) == (8, 3)
    assert kept["summary"]["rules_changed"] == ["child_age_limit: 13 -> 16"]
    assert "age-13" not in json.dumps(kept)  # no event id is kept with a promotion


# -- exit statuses and errors ----------------------------------------------------------------


def test_an_invalid_candidate_policy_exits_2_with_its_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = write(tmp_path / "h.jsonl", *(line(e) for e in ages_history()))
    broken = policy_file(
        tmp_path / "candidate.toml", ("child_age_limit = 13", "child_age_limit = -1")
    )

    status, out, err = run(capsys, "--policy", str(broken), str(history))

    assert (status, out) == (2, "")
    assert "the candidate policy" in err
    assert "child_age_limit: Input should be greater than or equal to 0" in err


@pytest.mark.parametrize("which", ["--policy", "--baseline"])
def test_a_policy_that_cannot_be_read_exits_2(
    which: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = write(tmp_path / "h.jsonl", *(line(e) for e in ages_history()))
    good = policy_file(tmp_path / "good.toml")
    args = {"--policy": str(good), "--baseline": None}
    args[which] = str(tmp_path / "missing.toml")
    argv = [part for key, value in args.items() if value for part in (key, value)]

    status, out, err = run(capsys, *argv, str(history))

    assert (status, out) == (2, "")
    assert "cannot read the" in err
    assert "No such file or directory" in err


def test_unreadable_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    candidate = policy_file(tmp_path / "candidate.toml", AGE_16)

    status, out, err = run(capsys, "--policy", str(candidate), str(tmp_path / "nope.jsonl"))

    assert (status, out) == (2, "")
    assert "cannot read" in err


def test_no_history_at_a_terminal_exits_2_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Terminal(io.TextIOWrapper):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(io.BytesIO(b"")))
    status, _, err = run(capsys, "--policy", str(policy_file(tmp_path / "c.toml", AGE_16)))

    assert status == 2
    assert "no history given" in err


def test_standard_input_is_read_with_a_dash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = "".join(line(e) + "\n" for e in ages_history()).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    candidate = policy_file(tmp_path / "candidate.toml", AGE_16)

    status, report, _ = run_json(capsys, "--policy", str(candidate), "-")

    assert (status, report["totals"]["changed"]) == (1, 3)


def test_invalid_lines_are_reported_like_replays_counted_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = ages_history()
    bad_event = json.loads(line(events[1]))
    del bad_event["purpose"]
    bad_recorded = json.loads(line(events[2]))
    bad_recorded["recorded"] = {"outcome": "MAYBE", "reasons": [], "policy_version": "x"}
    history = write(
        tmp_path / "h.jsonl",
        line(events[0]),
        "{not json " + SECRET,
        json.dumps(bad_event),
        "",
        json.dumps(bad_recorded),
        *(line(e) for e in events[3:]),
    )
    candidate = policy_file(tmp_path / "candidate.toml", AGE_16)

    status, report, err = run_json(capsys, "--policy", str(candidate), str(history))

    assert [json.loads(e) for e in err.splitlines()] == [
        {"line": 2, "error": "not valid JSON"},
        {"line": 3, "error": "TransferRequested.purpose: Field required"},
        {"line": 5, "error": "recorded.outcome: Input should be 'ALLOW' or 'BLOCK'"},
    ]
    assert report["totals"]["invalid_lines"] == 3
    assert report["totals"]["transfers"] == 6
    assert status == 1  # ages 13-15 still flip; invalid lines do not decide the status
    assert SECRET not in err


# -- recorded decisions, sealed placeholders, privacy ----------------------------------------


def decisions(events: list[Event]) -> dict[str, Decision]:
    lines = [e.model_dump_json().encode() for e in events]
    return {d.event_id: d for d in replay(lines, BASELINE) if isinstance(d, Decision)}


def test_a_recorded_decision_is_the_old_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = ages_history()
    made = decisions(events)
    older = {  # what an earlier policy (child age 12) enforced for the 12-year-old
        "outcome": "ALLOW",
        "reasons": [{"code": "PROCESSOR", "clause": "C-PROCESSOR-PURPOSE"}],
        "policy_version": "cloudsigma-privacy@0000000000000012",
        "order_ref": None,
    }
    lines = [line(events[0])]
    for event in events[1:]:
        recorded = older if event.event_id == "age-12" else recorded_of(made[event.event_id])
        lines.append(line(event, recorded))
    history = write(tmp_path / "h.jsonl", *lines)
    candidate = policy_file(tmp_path / "candidate.toml", AGE_16)

    status, report, _ = run_json(capsys, "--policy", str(candidate), str(history))

    assert status == 1
    assert report["old_side"] == {
        "recorded": 8,
        "baseline": 0,
        "recorded_policy_versions": {
            BASELINE.version: 7,
            "cloudsigma-privacy@0000000000000012": 1,
        },
        "recorded_under_other_versions": 1,
    }
    [group] = report["changes"]  # the 12-year-old's recorded ALLOW joins the 13-15s
    assert group["examples"] == ["age-12", "age-13", "age-14", "age-15"]
    assert group["recorded_policy_versions"] == {
        BASELINE.version: 3,
        "cloudsigma-privacy@0000000000000012": 1,
    }
    assert any("another policy than the baseline file" in n for n in report["notes"])


def test_a_recorded_decision_the_baseline_does_not_reproduce_is_not_a_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The guard blocked the transfer for an erasure whose event the history no longer holds.
    erased = rights(SubjectRightsAction.ERASURE_COMPLETED, account="acc-gone")
    after = transfer(event_id="after-erasure", account="acc-gone", subject_age=14)
    events = [*ages_history(), erased, after]
    made = decisions(events)
    lines = [line(events[0])]
    lines += [line(e, recorded_of(made[e.event_id])) for e in events[1:-2]]
    lines.append(line(after, recorded_of(made["after-erasure"])))  # the erasure line is lost
    history = write(tmp_path / "h.jsonl", *lines)
    candidate = policy_file(tmp_path / "candidate.toml", AGE_16)

    status, report, _ = run_json(capsys, "--policy", str(candidate), str(history))

    assert report["totals"]["not_reproduced"] == 1
    assert report["totals"]["changed"] == 3  # the 13-15s only
    [unreproduced] = report["not_reproduced"]
    assert unreproduced["recorded"] == {"outcome": "BLOCK", "codes": ["SUBJECT_ERASED"]}
    assert unreproduced["baseline"] == {"outcome": "ALLOW", "codes": ["PROCESSOR"]}
    assert unreproduced["examples"] == ["after-erasure"]
    assert status == 1


def test_recorded_decisions_are_read_in_any_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = ages_history()
    made = decisions(events)
    lines = [line(events[0])]
    for event in events[1:]:  # "recorded" first, with spaces: not the exporter's layout
        value = {"recorded": recorded_of(made[event.event_id]), **json.loads(line(event))}
        lines.append(json.dumps(value, indent=None, separators=(", ", ": ")))
    history = write(tmp_path / "h.jsonl", *lines)
    candidate = policy_file(tmp_path / "candidate.toml", AGE_16)

    status, report, err = run_json(capsys, "--policy", str(candidate), str(history))

    assert (status, err) == (1, "")
    assert report["old_side"]["recorded"] == 8
    assert report["changes"][0]["examples"] == ["age-13", "age-14", "age-15"]


def test_sealed_placeholders_are_counted_never_redecided_and_no_account_id_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = ages_history()
    made = decisions(events)
    sealed = [
        {
            "type": "Sealed",
            "event_id": f"gone-{n}",
            "event_type": "TransferRequested",
            "reason": "erased",
            "recorded": recorded_of(made["age-14"]),
        }
        for n in range(3)
    ]
    sealed.append(
        {
            "type": "Sealed",
            "event_id": "gone-consent",
            "event_type": "ConsentChanged",
            "reason": "erased",
        }
    )
    lines = [line(e, recorded_of(made[e.event_id]) if e.event_id in made else None) for e in events]
    history = write(tmp_path / "h.jsonl", *lines, *(json.dumps(s) for s in sealed))
    candidate = policy_file(tmp_path / "candidate.toml", AGE_16)

    status, report, err = run_json(capsys, "--policy", str(candidate), str(history))
    _, text, text_err = run(capsys, "--policy", str(candidate), str(history))

    assert status == 1
    totals = report["totals"]
    assert (totals["sealed_decisions"], totals["sealed_governance_changes"]) == (3, 1)
    assert totals["transfers"] == 8  # the sealed decisions are not re-decided
    assert report["sealed_reasons"] == {"erased": 4}
    assert "  3 decisions of erased accounts not re-decided, 1 governance change of erased " in text
    for output in (json.dumps(report), err, text, text_err):
        assert SECRET not in output
        assert "acc-" not in output


def test_a_sealed_allow_under_an_order_spends_its_quota_on_both_sides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ch_order = order("ord-q", max_disclosures=1, accounts=("acc-1", "acc-2"))
    events = [ch_order, approve("ord-q")]
    sealed = {
        "type": "Sealed",
        "event_id": "gone-disclosure",
        "reason": "erased",
        "recorded": {
            "outcome": "ALLOW",
            "reasons": [{"code": "ORDER", "clause": "C-LAW-ENFORCEMENT"}],
            "policy_version": BASELINE.version,
            "order_ref": "ord-q",
        },
    }
    later = le_transfer("ord-q", event_id="later", account="acc-2", minutes=20)
    exhausted = {
        "outcome": "BLOCK",
        "reasons": [{"code": "ORDER_QUOTA_EXHAUSTED", "clause": "C-LAW-ENFORCEMENT"}],
        "policy_version": BASELINE.version,
        "order_ref": "ord-q",
    }
    history = write(
        tmp_path / "h.jsonl",
        *(line(e) for e in events),
        json.dumps(sealed),
        line(later, exhausted),
    )
    candidate = policy_file(tmp_path / "candidate.toml", AGE_16)

    status, report, _ = run_json(capsys, "--policy", str(candidate), str(history))

    # The baseline reproduces the recorded block only if the sealed ALLOW spent the quota
    # on the old side; the candidate agrees only if it spent it on the new side too.
    assert report["totals"] | {"lines": 0} == report["totals"] | {
        "lines": 0,
        "transfers": 1,
        "unchanged": 1,
        "changed": 0,
        "not_reproduced": 0,
        "sealed_decisions": 1,
    }
    assert status == 0
