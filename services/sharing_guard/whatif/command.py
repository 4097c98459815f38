"""The ``sharing-guard what-if`` command: policies and history read, the report written.

``what-if --policy CANDIDATE [--baseline BASELINE] [--format text|json] [--examples N]
[FILE|-]`` reads the history (JSON Lines, as ``replay`` reads it, from FILE or standard
input) and writes the report to standard output; each invalid line is reported on standard
error as replay reports it (``{"line": N, "error": "..."}``) and counted. Exit status: 0 no
decision changes, 1 some decision changes, 2 the run could not start or finish (a policy
that does not load or is invalid, input that cannot be read, no input given at a terminal).
Messages name files, fields and counts, never a value of an event.
"""

import argparse
import json
import sys
from pathlib import Path

from sharing_guard.core.policy import Policy, PolicyError
from sharing_guard.history_input import open_input, pause_collector, stdin_is_terminal
from sharing_guard.policy_file import load_policy
from sharing_guard.replay import LineError
from sharing_guard.whatif.report import build_report, render_text
from sharing_guard.whatif.run import what_if

EXIT_UNCHANGED, EXIT_CHANGED, EXIT_ERROR = 0, 1, 2
_PROG = "sharing-guard what-if"


def _load(path: Path | None, what: str) -> Policy | str:
    """The policy, or what is wrong with it."""
    try:
        return load_policy(path)
    except OSError as exc:
        return f"cannot read the {what} policy {path}: {exc.strerror or exc}"
    except PolicyError as exc:
        return f"the {what} policy {path or '(bundled)'} is invalid: {exc}"


def _fail(message: str) -> int:
    print(f"{_PROG}: {message}", file=sys.stderr)
    return EXIT_ERROR


def _report_invalid(error: LineError) -> None:
    sys.stderr.write(error.to_json() + "\n")


def run_whatif(args: argparse.Namespace) -> int:
    """Run the command on parsed arguments; returns the exit status."""
    if args.examples < 0:
        return _fail("--examples must be 0 or more")
    name = args.file
    if name is None:
        if stdin_is_terminal():
            return _fail(
                "no history given, and standard input is a terminal. Give a JSON Lines file "
                "(sharing-guard what-if --policy candidate.toml history.jsonl) or pipe it in "
                "(audit-sink history | sharing-guard what-if --policy candidate.toml -)"
            )
        name = "-"
    baseline = _load(args.baseline, "baseline")
    if isinstance(baseline, str):
        return _fail(baseline)
    candidate = _load(args.policy, "candidate")
    if isinstance(candidate, str):
        return _fail(candidate)
    pause_collector()
    try:
        with open_input(name) as lines:
            tally = what_if(
                lines, baseline, candidate, examples=args.examples, invalid=_report_invalid
            )
    except OSError as exc:
        return _fail(f"cannot read {name}: {exc.strerror or exc}")
    report = build_report(
        tally,
        baseline,
        candidate,
        baseline_source="bundled policy" if args.baseline is None else str(args.baseline),
        candidate_source=str(args.policy),
    )
    text = (
        json.dumps(report, ensure_ascii=False) + "\n"
        if args.format == "json"
        else render_text(report)
    )
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        sys.stderr.close()
    return EXIT_CHANGED if tally.changed else EXIT_UNCHANGED
