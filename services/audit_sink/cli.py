"""The ``audit-sink`` command line: ingest, keygen, verify, proof, export, query, history, erase,
pg-schema.

Settings come from ``AUDIT_SINK_*`` variables (:mod:`audit_sink.settings`); each command is
a thin shell over a plain function (:mod:`audit_sink.ingest`, :mod:`audit_sink.verification`,
:mod:`audit_sink.proofs`, :mod:`audit_sink.query`, :mod:`audit_sink.export`,
:mod:`audit_sink.history`, :class:`audit_sink.writer.AuditLog`).
Exit status: 0 success (for ``verify``: the log is intact), 1 the answer is negative
(``verify`` found a problem, ``proof`` has no proof), 2 the command could not run (settings,
keys, store). Messages never contain personal data: entries are named by index.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import TextIO

from sharing_guard.edge import logsafe

from audit_sink import bootstrap
from audit_sink.history import HistoryCounts, history_lines
from audit_sink.pg_schema import heads_schema_sql, keystore_schema_sql, log_schema_sql
from audit_sink.proofs import ProofError
from audit_sink.query import InstantError, QueryCriteria, parse_instant
from audit_sink.render import FORMATS, render
from audit_sink.settings import AuditSinkSettings, SettingsError
from audit_sink.signing import SigningKeyError, create_signing_key
from audit_sink.store import StoreError
from audit_sink.trail_read import (
    erase_in_trail,
    member_readers,
    prove_in_trail,
    query_trail,
)
from audit_sink.trail_verify import TrailProblem, TrailReport, verify_trail
from audit_sink.trail_views import export_trail
from audit_sink.transparency import Period, read_report, render_table
from audit_sink.verify import Report

EXIT_OK, EXIT_NEGATIVE, EXIT_CANNOT_RUN = 0, 1, 2
_SHOWN_PROBLEMS = 20


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audit-sink",
        description="The tamper-evident audit trail of sharing-guard decisions.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser(
        "ingest", help="consume the audit topic into the log until SIGTERM or SIGINT"
    )
    ingest.add_argument(
        "--stop-at-end",
        action="store_true",
        help="stop once every assigned partition is consumed to its end (a backfill)",
    )

    keygen = commands.add_parser("keygen", help="create the checkpoint signing key (0600)")
    keygen.add_argument(
        "--index-key", action="store_true", help="instead print a fresh random index key"
    )

    verify = commands.add_parser("verify", help="verify the whole log; exit 0 when intact")
    verify.add_argument("--vkey", help="the log's pinned verifier key (else AUDIT_SINK_VKEY)")
    verify.add_argument(
        "--trusted-checkpoint",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a checkpoint held outside the database (a .note file, or a directory of them)",
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")

    proof = commands.add_parser("proof", help="tlog-proof of one decision, checkable offline")
    proof.add_argument("event_id")
    proof.add_argument("--vkey", help="the log's pinned verifier key (else AUDIT_SINK_VKEY)")

    export = commands.add_parser("export", help="write a self-contained, verifiable export")
    export.add_argument("directory", type=Path)
    export.add_argument("--vkey", help="the log's pinned verifier key (else AUDIT_SINK_VKEY)")
    export.add_argument(
        "--include-payloads", action="store_true", help="also export the ciphertexts"
    )

    query = commands.add_parser("query", help="list decisions and governance changes")
    query.add_argument("--account", help="account id (needs the index key)")
    query.add_argument("--recipient")
    query.add_argument("--outcome", choices=("ALLOW", "BLOCK"))
    query.add_argument("--reason", help="a reason code, e.g. CONSENT_MISSING")
    query.add_argument("--order-ref")
    query.add_argument("--from", dest="occurred_from", help="RFC 3339 instant, inclusive")
    query.add_argument("--to", dest="occurred_to", help="RFC 3339 instant, exclusive")
    query.add_argument("--limit", type=int)
    query.add_argument("--format", choices=FORMATS, default="table")

    report = commands.add_parser(
        "report", help="transparency report: law-enforcement orders and disclosures of a period"
    )
    report.add_argument(
        "--from", dest="period_from", required=True, metavar="INSTANT", help="RFC 3339, inclusive"
    )
    report.add_argument(
        "--to", dest="period_to", required=True, metavar="INSTANT", help="RFC 3339, exclusive"
    )
    report.add_argument("--format", choices=("table", "json"), default="table")

    commands.add_parser(
        "history",
        help="the trail as JSON Lines for `sharing-guard what-if` (each decision with its "
        "recorded outcome; erased accounts' entries as sealed placeholders)",
        description="Write the trail's history to standard output as JSON Lines, in the "
        "order the guard emitted it: each transfer with the decision recorded for it, each "
        "governance change, and a placeholder without identifiers for each entry whose "
        "identifiers cannot be opened (erased accounts). Pipe it into `sharing-guard what-if "
        "--policy candidate.toml -` (docs/policy-change.md).",
    )

    erase = commands.add_parser("erase", help="crypto-shred an account (right to erasure)")
    erase.add_argument("account", help="the account id, or - to read it from stdin")

    serve = commands.add_parser(
        "serve", help="read-only HTTP API for the security team (needs AUDIT_SINK_API_TOKEN)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8088, help="port to listen on (8088)")

    schema = commands.add_parser("pg-schema", help="print the PostgreSQL DDL and grants")
    schema.add_argument("--writer-role")
    schema.add_argument("--reader-role")
    schema.add_argument("--keys-role")
    schema.add_argument(
        "--shards",
        type=_count,
        default=0,
        metavar="N",
        help="also the schemas of shards 0..N-1 and of the heads notes (AUDIT_SINK_SHARDING="
        "partition: N at least the audit topic's partition count)",
    )
    return parser


def _count(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError("a number of shards from 0 to 10000")
    return value


def _instant(text: str | None, what: str) -> datetime | None:
    try:
        return parse_instant(text)
    except InstantError as exc:
        raise SettingsError(f"{what} {exc} (e.g. 2026-11-01T00:00:00Z)") from None


def _period(start: str, end: str) -> Period:
    period_from, period_to = _instant(start, "--from"), _instant(end, "--to")
    if period_from is None or period_to is None:
        raise SettingsError("a report needs --from and --to")
    try:
        return Period(period_from, period_to)
    except ValueError as exc:
        raise SettingsError(f"--from/--to: {exc}") from None


def _trusted_notes(paths: Sequence[Path]) -> list[str]:
    """The notes of the files given, and of every ``*.note`` under the directories given
    (a sharded trail's archive holds ``shards/<partition>/`` and ``heads/``)."""
    notes: list[str] = []
    for path in paths:
        files = sorted(path.rglob("*.note")) if path.is_dir() else [path]
        notes.extend(f.read_text("utf-8") for f in files)
    return notes


def _print_trail(trail: TrailReport, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(trail.to_dict(), sort_keys=True) + "\n")
        return
    if trail.ok:
        shards = sum(1 for m in trail.members if m.member.partition is not None)
        legacy = " and the single log before them" if len(trail.members) > shards else ""
        heads = (
            "no heads note" if trail.latest_heads is None else f"heads note {trail.latest_heads}"
        )
        out.write(
            f"OK: {trail.size} entries intact in {shards} shard(s){legacy}; "
            f"{trail.heads_verified} heads notes verified, the latest ({heads}) consistent "
            "with every shard\n"
        )
        for member in trail.members:
            report = member.report
            latest = report.latest_checkpoint
            out.write(
                f"  {member.member.label}: {report.size} entries, {report.erased} erased, "
                f"{report.checkpoints_verified} checkpoints"
                + ("" if latest is None else f" (latest {latest.size})")
                + f", {report.unsigned_tail} unsigned\n"
            )
        return
    found = trail.first()
    assert found is not None
    label, problem = found
    if isinstance(problem, TrailProblem):
        out.write(f"FAIL: {label}: {problem.message} [{problem.code}]\n")
    else:
        where = f"entry {problem.index}" if problem.index is not None else "checkpoint"
        out.write(f"FAIL: first bad {label} {where}: {problem.message} [{problem.code.value}]\n")
    shown = 0
    for other in trail.problems[1:]:
        out.write(f"  also: {other.member or 'trail'}: {other.message} [{other.code}]\n")
        shown += 1
    for member in trail.members:
        for found_problem in member.report.problems:
            if found_problem is problem or shown >= _SHOWN_PROBLEMS:
                continue
            at = "" if found_problem.index is None else f" entry {found_problem.index}"
            out.write(
                f"  also: {member.member.label}{at}: {found_problem.message} "
                f"[{found_problem.code.value}]\n"
            )
            shown += 1
    out.write(f"{trail.problem_count} problem(s) in total\n")


def _print_report(report: Report, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(report.to_dict(), sort_keys=True) + "\n")
        return
    if report.ok:
        latest = report.latest_checkpoint
        parts = [
            f"OK: {report.size} entries intact",
            f"{report.erased} erased under erasure entries",
            f"{report.checkpoints_verified} checkpoints verified"
            + ("" if latest is None else f" (latest {latest.size})"),
            f"{report.unsigned_tail} entries after the latest checkpoint",
        ]
        if report.trusted_sizes:
            parts.append(f"consistent with trusted checkpoints {list(report.trusted_sizes)}")
        out.write(", ".join(parts) + "\n")
        return
    first = report.first
    assert first is not None
    where = f"entry {first.index}" if first.index is not None else "checkpoint"
    out.write(f"FAIL: first bad {where}: {first.message} [{first.code.value}]\n")
    for problem in report.problems[1:_SHOWN_PROBLEMS]:
        out.write(f"  also: {problem.message} [{problem.code.value}]\n")
    out.write(f"{report.problem_count} problem(s) in total\n")


def _keygen(settings: AuditSinkSettings, index_key: bool) -> int:
    if index_key:
        print(base64.b64encode(os.urandom(32)).decode("ascii"))
        return EXIT_OK
    path = settings.signing_key_path()
    signer = create_signing_key(path, settings.require_origin())
    print(signer.verifier().vkey)
    print(
        f"wrote {path} (mode 0600); publish the vkey above and pin it with AUDIT_SINK_VKEY",
        file=sys.stderr,
    )
    return EXIT_OK


def _ingest(settings: AuditSinkSettings, stop_at_end: bool) -> int:
    """Run the Kafka ingest; SIGTERM or SIGINT stop it after the batch in hand. Spans of
    the appends are exported when an OTLP endpoint is set (:mod:`sharing_guard.tracing`);
    metrics are served while it runs (:mod:`audit_sink.ingest_metrics`)."""
    from kafka.errors import KafkaError
    from sharing_guard.tracing import AUDIT_SINK, otlp_configured, tracer_provider

    from audit_sink.ingest import Ingestor, kafka_consumer
    from audit_sink.ingest_metrics import start_listener
    from audit_sink.prepare import PreparePool
    from audit_sink.trail import TrailWriter
    from audit_sink.writer import AuditLog

    logsafe.configure(logging.INFO)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()
        signal.signal(signum, signal.SIG_DFL)  # a second signal ends the process at once

    for signum in (signal.SIGTERM, signal.SIGINT):  # from the start: a stop is never lost
        signal.signal(signum, request_stop)
    # The helper is spawned before any thread or connection exists in this process.
    preparer = PreparePool(bootstrap.index_key(settings)) if settings.prepare_in_helper else None
    tracing = tracer_provider(AUDIT_SINK) if otlp_configured() else None
    sharded = settings.sharding == "partition"
    with ExitStack() as stack:
        if tracing is not None:  # last: the spans still queued leave before the process does
            stack.callback(tracing.shutdown)
        if preparer is not None:
            stack.callback(preparer.close)
        store = None if sharded else bootstrap.open_store(settings)
        if store is not None:
            stack.callback(store.close)
        keys = bootstrap.open_keystore(settings)
        stack.callback(keys.close)
        log: AuditLog | TrailWriter
        if store is None:
            log = bootstrap.build_trail_writer(settings, keys)
            stack.callback(log.close)
        else:
            log = bootstrap.build_log(settings, store, keys)
        try:
            consumer = kafka_consumer(settings)
        except KafkaError as exc:
            raise SettingsError(f"cannot reach Kafka: {type(exc).__name__}") from None
        ingestor = Ingestor(
            log,
            consumer,
            settings.audit_topic,
            poll_timeout_ms=settings.kafka.poll_timeout_ms,
            idle_checkpoint_s=settings.idle_checkpoint_ms / 1000,
            stats_every_s=settings.stats_every_s,
            preparer=preparer,
            tracer=None if tracing is None else tracing.get_tracer("audit_sink"),
            sole_member=not sharded,
        )
        listener = start_listener(settings, ingestor, store)  # /metrics, /healthz
        if listener is not None:
            stack.callback(listener.close)
        stats = ingestor.run(stop, stop_at_end=stop_at_end)
    print(
        f"ingested {stats.consumed} records in {stats.batches} batches: {stats.appended} "
        f"entries ({stats.anomalies} anomalies), {stats.skipped} skipped, log size {stats.size}",
        file=sys.stderr,
    )
    return EXIT_OK


def _run(args: argparse.Namespace, settings: AuditSinkSettings) -> int:
    command = args.command
    if command == "keygen":
        return _keygen(settings, args.index_key)
    if command == "serve":
        from audit_sink.http_api import serve as serve_http

        return serve_http(settings, args.host, args.port)
    if command == "ingest":
        return _ingest(settings, args.stop_at_end)
    if command == "pg-schema":
        try:
            return _pg_schema(args, settings)
        except ValueError as exc:  # a name that is no plain SQL identifier
            raise SettingsError(str(exc)) from None
    settings.require_origin()  # before anything is opened or created
    if command == "verify":
        trail = verify_trail(
            settings,
            bootstrap.pinned_verifier(settings, args.vkey),
            _trusted_notes(args.trusted_checkpoint),
            workers=settings.verify_workers,
        )
        if trail.sharded:
            _print_trail(trail, args.json, sys.stdout)
        else:
            _print_report(trail.members[0].report, args.json, sys.stdout)
        return EXIT_OK if trail.ok else EXIT_NEGATIVE
    settings.require_origin()  # before anything is opened or created
    if command == "export":
        return _export(args, settings)
    if command in ("query", "erase"):
        return _with_keys(args, settings)
    if command == "history":
        return _history(settings)
    with member_readers(settings) as readers:
        if command == "proof":
            pinned = bootstrap.pinned_verifier(settings, args.vkey)
            try:
                _, proof = prove_in_trail(readers, args.event_id, pinned)
            except ProofError as exc:
                print(f"audit-sink: no proof: {exc}", file=sys.stderr)
                return EXIT_NEGATIVE
            sys.stdout.write(proof.bundle)
            return EXIT_OK
        period = _period(args.period_from, args.period_to)
        transparency = read_report([r.reader for r in readers], period)
    if args.format == "json":
        print(json.dumps(transparency.to_dict(), ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(render_table(transparency))
    return EXIT_OK


def _pg_schema(args: argparse.Namespace, settings: AuditSinkSettings) -> int:
    """Print the DDL of the log (and of the shards and heads notes, with ``--shards``);
    nothing is printed if a name is no plain SQL identifier (``ValueError``)."""
    pg = settings.postgres
    parts = [
        log_schema_sql(pg.schema_name, args.writer_role, args.reader_role),
        keystore_schema_sql(pg.keys_schema, args.keys_role),
    ]
    if args.shards:
        parts.extend(
            log_schema_sql(settings.shard_schema(p), args.writer_role, args.reader_role)
            for p in range(args.shards)
        )
        parts.append(heads_schema_sql(settings.heads_schema(), args.writer_role, args.reader_role))
    print("\n".join(parts))
    return EXIT_OK


def _export(args: argparse.Namespace, settings: AuditSinkSettings) -> int:
    """One export for a single log; for a sharded trail one per member (``log/``,
    ``shards/<partition>/``, each verifiable on its own with the member's vkey) and the
    stored heads notes (``heads/<n>.note``): :func:`audit_sink.trail_views.export_trail`."""
    with member_readers(settings) as readers:
        pinned = bootstrap.pinned_verifier(settings, args.vkey)
        counts = export_trail(
            settings, readers, pinned, args.directory, include_payloads=args.include_payloads
        )
    size, checkpoints, sharded = counts.size, counts.checkpoints, counts.sharded
    print(
        f"exported {size} entries and {checkpoints} checkpoints "
        + (f"of {counts.members} member log(s) " if sharded else "")
        + f"to {args.directory}",
        file=sys.stderr,
    )
    return EXIT_OK


def _with_keys(args: argparse.Namespace, settings: AuditSinkSettings) -> int:
    keys = bootstrap.open_keystore(settings)
    try:
        if args.command == "query":
            criteria = QueryCriteria(
                account_id=args.account,
                recipient_id=args.recipient,
                outcome=args.outcome,
                reason_code=args.reason,
                order_ref=args.order_ref,
                occurred_from=_instant(args.occurred_from, "--from"),
                occurred_to=_instant(args.occurred_to, "--to"),
                limit=args.limit,
            )
            index_key = bootstrap.index_key(settings) if args.account is not None else None
            with member_readers(settings) as readers:
                views = query_trail(settings, readers, keys, criteria, index_key)
            sys.stdout.write(render(views, args.format))
            return EXIT_OK
        account = sys.stdin.readline().strip() if args.account == "-" else args.account
        if not account:
            raise SettingsError("no account given")
        result, members = erase_in_trail(settings, keys, account)
        where = "" if result.erasure_index is None else f" (erasure entry {result.erasure_index})"
        if members > 1:
            where = f" (erasure entries in {members} member logs)"
        print(
            f"erased {result.erased_entries} entries{where}, destroyed "
            f"{result.keys_destroyed} key(s), deleted {result.payloads_deleted} ciphertext(s)"
        )
        return EXIT_OK
    finally:
        keys.close()


def _history(settings: AuditSinkSettings) -> int:
    """Write the trail's history (:mod:`audit_sink.history`) to stdout; counts to stderr.
    The log is opened before the key store, so that no key file is made for a missing log."""
    counts = HistoryCounts()
    out = sys.stdout
    try:
        with member_readers(settings) as readers:
            keys = bootstrap.open_keystore(settings)
            try:
                for line in history_lines(readers, keys, counts):
                    out.write(line)
                    out.write("\n")
            finally:
                keys.close()
        out.flush()
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        sys.stderr.close()
        return EXIT_OK
    skipped = [
        f"{what} {n}"
        for n, what in (
            (counts.other_events, "records of other events (policy promotions)"),
            (counts.anomalies, "anomaly entries"),
            (counts.erasures, "erasure entries"),
            (counts.unreadable, "leaves that do not decode (run audit-sink verify)"),
        )
        if n
    ]
    sealed = counts.sealed_decisions + counts.sealed_governance
    unavailable = (
        f", {counts.unavailable} unavailable: run audit-sink verify" if counts.unavailable else ""
    )
    print(
        f"history: {counts.lines} lines from {counts.members} member log(s): "
        f"{counts.decisions} decisions, {counts.governance} governance changes, {sealed} "
        f"sealed placeholders ({counts.sealed_decisions} decisions, {counts.sealed_governance} "
        f"governance changes{unavailable})"
        + ("; skipped: " + ", ".join(skipped) if skipped else ""),
        file=sys.stderr,
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _run(args, AuditSinkSettings())
    except (SettingsError, SigningKeyError, StoreError, OSError) as exc:
        print(f"audit-sink: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN


if __name__ == "__main__":
    sys.exit(main())
