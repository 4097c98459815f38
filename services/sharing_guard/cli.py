"""The ``sharing-guard`` command line.

``replay [FILE|-]`` decides a JSON Lines file offline (contract section 4); ``explain``
does the same and prints each decision for a person. Without FILE they read standard input
when it is a pipe or a file, and refuse when it is a terminal (instead of waiting there
silently). Exit status: 0 when every line was valid, 1 when some line was invalid (reported
on stderr), 2 when the run could not start (unreadable input or policy, or no input given
at a terminal).
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from sharing_guard.core.policy import Policy, PolicyError
from sharing_guard.explain import explain
from sharing_guard.history_input import open_input, pause_collector, stdin_is_terminal
from sharing_guard.orders.cli import add_orders_parser, run_orders
from sharing_guard.policy_file import load_policy
from sharing_guard.promotion import add_policy_parser, run_policy
from sharing_guard.replay import LineError, replay

EXIT_OK, EXIT_INVALID_LINES, EXIT_CANNOT_START = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sharing-guard", description="Decide outbound data transfers against the policy."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("replay", "decide a JSON Lines file of events offline; one JSON decision per transfer"),
        ("explain", "like replay, but print each decision for a person"),
    ):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "file",
            nargs="?",
            help="JSON Lines input, or - for standard input (the default unless it is a terminal)",
        )
        sub.add_argument("--policy", type=Path, help="policy file (default: the bundled one)")
    what_if = commands.add_parser(
        "what-if",
        help="re-decide a history under a candidate policy and report what would change",
        description="Re-decide a history (JSON Lines as replay reads them, optionally with "
        "the decision recorded for each transfer: audit-sink history) under a candidate "
        "policy and report the decisions that would change, grouped, with the rule behind "
        "each. Exit status: 0 no change, 1 some change, 2 error (docs/policy-change.md).",
    )
    what_if.add_argument(
        "file",
        nargs="?",
        help="JSON Lines history, or - for standard input (the default unless it is a terminal)",
    )
    what_if.add_argument("--policy", type=Path, required=True, help="the candidate policy file")
    what_if.add_argument(
        "--baseline",
        type=Path,
        help="the policy that decides the old side of lines without a recorded decision "
        "(default: the bundled one)",
    )
    what_if.add_argument("--format", choices=("text", "json"), default="text")
    what_if.add_argument(
        "--examples", type=int, default=5, metavar="N", help="event ids per group (default 5)"
    )
    commands.add_parser(
        "worker",
        help="run a guard worker on Kafka (configured by SHARING_GUARD_* variables)",
        description="Run a guard worker on Kafka; see docs/configuration.md for its settings.",
    )
    commands.add_parser(
        "migrate-faust-state",
        help="carry the state of the earlier Faust tables into the worker's changelogs",
        description="Copy consents, rights, recipients and orders from the Faust table "
        "changelogs of SHARING_GUARD_APP_ID into the changelogs of the current worker; run "
        "once, with the old workers stopped and before the new ones start (docs/operations.md).",
    )
    commands.add_parser(
        "alerts",
        help="post security alerts to a webhook (configured by SHARING_GUARD_ALERTS_*)",
        description="Consume the guard's outputs and post security alerts to a webhook; "
        "see docs/alerts.md for its settings.",
    )
    add_orders_parser(commands)
    add_policy_parser(commands)
    return parser


def _no_input_message(command: str) -> str:
    stdin = "there is no standard input" if sys.stdin is None else "standard input is a terminal"
    return (
        f"sharing-guard {command}: no events given, and {stdin}. "
        f"Give a JSON Lines file (sharing-guard {command} events.jsonl) or pipe the events in "
        f"(cat events.jsonl | sharing-guard {command}); "
        f"'sharing-guard {command} -' reads what you type."
    )


def _run(lines: BinaryIO, policy: Policy, human: bool) -> int:
    pause_collector()
    out, err = sys.stdout, sys.stderr
    status = EXIT_OK
    for item in replay(lines, policy):
        if isinstance(item, LineError):
            status = EXIT_INVALID_LINES
            err.write(item.to_json() + "\n")
        elif human:
            out.write(explain(item, policy) + "\n")
        else:
            out.write(item.model_dump_json() + "\n")
    out.flush()
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "orders":
        return run_orders(args)
    if args.command == "policy":
        return run_policy(args)
    if args.command == "what-if":
        from sharing_guard.whatif.command import run_whatif

        return run_whatif(args)
    if args.command == "migrate-faust-state":
        from sharing_guard.bootstrap import migrate_state

        return migrate_state()
    if args.command == "worker":
        from sharing_guard.bootstrap import run_worker

        run_worker()
        return EXIT_OK
    if args.command == "alerts":
        from sharing_guard.alerts.bootstrap import main as run_alerts

        return run_alerts()
    if args.file is None:
        if stdin_is_terminal():
            print(_no_input_message(args.command), file=sys.stderr)
            return EXIT_CANNOT_START
        args.file = "-"
    try:
        policy = load_policy(args.policy)
    except (OSError, PolicyError) as exc:
        print(f"sharing-guard: cannot load policy: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    try:
        with open_input(args.file) as lines:
            return _run(lines, policy, human=args.command == "explain")
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        sys.stderr.close()
        return EXIT_OK
    except OSError as exc:
        print(f"sharing-guard: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CANNOT_START


if __name__ == "__main__":
    sys.exit(main())
