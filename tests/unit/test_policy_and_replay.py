"""The policy document, default deny, fail-closed evaluation and `sharing-guard replay`."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from builders import register, transfer
from sharing_guard import replay as replay_module
from sharing_guard.cli import main
from sharing_guard.contract import Clause, Outcome, ReasonCode, RecipientType
from sharing_guard.core.ledger import GovernanceState, step
from sharing_guard.core.policy import PolicyError, parse_policy
from sharing_guard.policy_file import load_policy
from sharing_guard.replay import LineError, replay

BUNDLED = (Path(__file__).parents[2] / "services/sharing_guard/policy.toml").read_text()


def write_lines(path: Path, *items: object) -> Path:
    path.write_text(
        "".join(
            (item if isinstance(item, str) else item.model_dump_json()) + "\n" for item in items
        )  # type: ignore[attr-defined]
    )
    return path


# --- policy ----------------------------------------------------------------------------


def test_policy_version_changes_with_any_rule() -> None:
    changed = BUNDLED.replace("child_age_limit = 13", "child_age_limit = 16")
    assert parse_policy(changed).version != parse_policy(BUNDLED).version


def test_policy_version_ignores_comments_and_layout() -> None:
    reformatted = "# a new comment\n\n" + BUNDLED.replace("name = ", "name  =  ")
    assert parse_policy(reformatted).version == parse_policy(BUNDLED).version


def test_policy_version_names_the_policy() -> None:
    assert parse_policy(BUNDLED).version.startswith("cloudsigma-privacy@")


def test_appropriate_jurisdictions_are_configurable() -> None:
    policy = parse_policy(
        BUNDLED.replace(
            'appropriate_jurisdictions = ["CH"]', 'appropriate_jurisdictions = ["CH", "LI"]'
        )
    )
    assert policy.appropriate_jurisdictions == {"CH", "LI"}


def test_policy_missing_a_clause_text_is_refused_with_its_name() -> None:
    broken = BUNDLED.replace('"C-FRAUD" =', '"C-FRAUD-X" =')
    with pytest.raises(PolicyError, match="C-FRAUD"):
        parse_policy(broken)


def test_policy_with_an_unknown_purpose_is_refused() -> None:
    with pytest.raises(PolicyError, match="processor_purposes"):
        parse_policy(BUNDLED.replace('"DATA_ANALYSIS",\n', '"DATA_MINING",\n', 1))


def test_policy_that_is_not_toml_is_refused() -> None:
    with pytest.raises(PolicyError, match="TOML"):
        parse_policy("name = ")


def test_recipient_type_without_basis_is_blocked_no_legal_basis() -> None:
    no_fraud_basis = BUNDLED.replace('basis = "FRAUD_PREVENTION"\n', "")
    policy = parse_policy(no_fraud_basis)
    fraud = transfer(
        rtype=RecipientType.FRAUD_PREVENTION_PARTNER,
        purpose="FRAUD_PREVENTION",  # type: ignore[arg-type]
        fraud_case_ref="case-1",
    )
    decision = step(GovernanceState(), fraud, policy).decision
    assert decision is not None
    assert decision.outcome is Outcome.BLOCK
    assert [(r.code, r.clause) for r in decision.reasons] == [
        (ReasonCode.NO_LEGAL_BASIS, Clause.DEFAULT_DENY)
    ]


def test_decisions_validate_against_the_contract_model() -> None:
    decision = step(GovernanceState(), transfer(), load_policy()).decision
    assert decision is not None
    assert type(decision).model_validate_json(decision.model_dump_json()) == decision


# --- replay ----------------------------------------------------------------------------


def test_replay_writes_one_decision_per_transfer_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(
        tmp_path / "in.jsonl",
        register(),
        transfer(event_id="t1"),
        transfer(event_id="t2", account="acc-2"),
    )
    assert main(["replay", str(path)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["event_id"] for d in out] == ["t1", "t2"]
    assert out[0] == {
        "event_id": "t1",
        "outcome": "ALLOW",
        "reasons": [{"code": "PROCESSOR", "clause": "C-PROCESSOR-PURPOSE"}],
        "policy_version": load_policy().version,
        "order_ref": None,
    }


def test_replay_repeats_the_first_decision_for_a_repeated_event_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = transfer(event_id="t1")
    path = write_lines(
        tmp_path / "in.jsonl", register(), first, transfer(event_id="t1", account="x")
    )
    assert main(["replay", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0] == lines[1]


def test_invalid_lines_are_reported_and_change_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_register = register().model_dump_json().replace('"SUBCONTRACTOR"', '"SUBCONTRACTORX"')
    path = write_lines(
        tmp_path / "in.jsonl",
        "not json at all",
        bad_register,
        '{"type": "Nope", "event_id": "x"}',
        transfer(event_id="t1"),
    )
    assert main(["replay", str(path)]) == 1
    captured = capsys.readouterr()
    errors = [json.loads(line) for line in captured.err.splitlines()]
    assert [e["line"] for e in errors] == [1, 2, 3]
    assert errors[0]["error"] == "not valid JSON"
    assert "recipient_type" in errors[1]["error"]
    decisions = [json.loads(line) for line in captured.out.splitlines()]
    assert [d["reasons"][0]["code"] for d in decisions] == ["RECIPIENT_NOT_REGISTERED"]


def test_error_reports_do_not_echo_personal_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = transfer(account="acc-secret-4711").model_dump_json().replace('"CH"', '"Switzerland"')
    main(["replay", str(write_lines(tmp_path / "in.jsonl", line))])
    err = capsys.readouterr().err
    assert "recipient.jurisdiction" in err
    assert "acc-secret-4711" not in err
    assert "Switzerland" not in err


def test_event_id_reused_by_another_event_type_is_an_invalid_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = register()
    clash = transfer(event_id=reg.event_id)
    assert main(["replay", str(write_lines(tmp_path / "in.jsonl", reg, clash))]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.err)["line"] == 2
    assert captured.out == ""


def test_blank_lines_are_skipped_and_line_numbers_stay_true(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(tmp_path / "in.jsonl", transfer(), "", "   ", "{")
    assert main(["replay", str(path)]) == 1
    assert json.loads(capsys.readouterr().err)["line"] == 4


def test_replay_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = (transfer(event_id="t-stdin").model_dump_json() + "\n").encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert main(["replay", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["event_id"] == "t-stdin"


class _TypedIn(io.TextIOWrapper):
    """Standard input that says it is a terminal, holding what someone typed."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("command", ["replay", "explain"])
def test_no_file_at_a_terminal_is_refused_with_how_to_give_events(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main_fd, terminal_fd = os.openpty()
    with os.fdopen(main_fd, "rb"), os.fdopen(terminal_fd, "r") as terminal:
        assert terminal.isatty()
        monkeypatch.setattr(sys, "stdin", terminal)
        assert main([command]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "standard input is a terminal" in captured.err
    assert f"sharing-guard {command} events.jsonl" in captured.err  # a file argument
    assert f"cat events.jsonl | sharing-guard {command}" in captured.err  # or a pipe


def test_no_file_at_a_terminal_returns_at_once_instead_of_waiting() -> None:
    main_fd, terminal_fd = os.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sharing_guard.cli", "replay"],
            stdin=terminal_fd,
            capture_output=True,
            text=True,
            timeout=60,  # before the fix it waited here for ever
            check=False,
        )
    finally:
        os.close(terminal_fd)
        os.close(main_fd)
    assert done.returncode == 2, done.stderr
    assert "standard input is a terminal" in done.stderr


def test_no_file_reads_a_pipe(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "wb") as writer:
        writer.write((transfer(event_id="t-pipe").model_dump_json() + "\n").encode())
    with os.fdopen(read_fd, "r") as pipe:
        monkeypatch.setattr(sys, "stdin", pipe)
        assert main(["replay"]) == 0
    assert json.loads(capsys.readouterr().out)["event_id"] == "t-pipe"


def test_a_dash_reads_a_terminal_all_the_same(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    typed = (transfer(event_id="t-typed").model_dump_json() + "\n").encode()
    monkeypatch.setattr(sys, "stdin", _TypedIn(io.BytesIO(typed)))
    assert main(["explain", "-"]) == 0
    assert "t-typed" in capsys.readouterr().out


def test_missing_input_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_invalid_policy_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("name = 'x'\n")
    assert main(["replay", "--policy", str(policy), "-"]) == 2
    assert "cannot load policy" in capsys.readouterr().err


def test_an_internal_fault_blocks_with_guard_error_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_step = replay_module.step
    faulty = transfer(event_id="t-fault")

    def flaky_step(state: GovernanceState, event: object, policy: object) -> object:
        if getattr(event, "event_id", None) == "t-fault":
            raise RuntimeError("simulated fault")
        return real_step(state, event, policy)  # type: ignore[arg-type]

    monkeypatch.setattr(replay_module, "step", flaky_step)
    lines = [
        item.model_dump_json().encode() for item in (register(), faulty, transfer(event_id="t-ok"))
    ]
    results = list(replay(lines, load_policy()))
    assert not any(isinstance(r, LineError) for r in results)
    codes = [(r.event_id, r.codes) for r in results if not isinstance(r, LineError)]
    assert codes == [
        ("t-fault", (ReasonCode.GUARD_ERROR,)),
        ("t-ok", (ReasonCode.PROCESSOR,)),
    ]


def test_explain_describes_each_reason_with_its_clause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_lines(tmp_path / "in.jsonl", transfer(event_id="t1", subject_age=5))
    assert main(["explain", str(path)]) == 0
    text = capsys.readouterr().out
    policy = load_policy()
    assert text.startswith("t1: BLOCK")
    assert "CHILD_DATA [C-CHILDREN]" in text
    assert policy.code_texts[ReasonCode.CHILD_DATA] in text
    assert policy.clause_texts[Clause.CHILDREN] in text
    assert "RECIPIENT_NOT_REGISTERED [C-PROCESSOR-PURPOSE]" in text
