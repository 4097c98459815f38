"""``python -m sharing_guard.demo``: the whole system, its traffic and the live view.

``scripts/demo.sh`` (``make demo``) starts or picks the broker and runs this with its
address. In order: create the topics (defaults on a broker started for the demo with
``--own-broker``, a private ``.demo-<run id>`` suffix otherwise); start the services as
in production (:mod:`sharing_guard.demo.system`): the audit sink (its signing key made on
first run, SQLite), the order service (a token for each of two legal officers), the
alerts service (posting to a webhook receiver in this process) and one guard worker; wait
until they are ready; then send traffic and play the story (its court order registered
and approved through the order service's HTTP API, four eyes refused when one officer
tries both) and show the decisions until ``--seconds`` have passed or a signal (Ctrl-C,
SIGTERM, SIGHUP) arrives. Then stop the traffic, wait a little for the last decisions and
alerts, stop the services, let the audit sink ingest what is left, verify the trail
(every decision of the run in it), print the inclusion proof of the Virtual Drive block
and the run's transparency report, remove private topics and consumer groups, and say
where the logs are (kept, in ``.cache/demo/<run id>``). Signals only ask to stop: the
cleanup always runs to its end.

Exit status: 0 when the run went as planned; 1 when a service did not start or died,
sending failed, a story step (decision, officer's call or alert) went otherwise than
expected, or the trail did not verify or missed a decision; 2 on bad arguments.
"""

import argparse
import faulthandler
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TextIO

from sharing_guard.client import TransferClient
from sharing_guard.demo.feed import DecisionFeed
from sharing_guard.demo.guard import ServiceProcess, free_port, guard_process, worker_env
from sharing_guard.demo.screen import Screen, is_terminal
from sharing_guard.demo.story import DeskCall
from sharing_guard.demo.system import AuditSink, OrderDesk, alerts_process
from sharing_guard.demo.tally import Snapshot, Tally
from sharing_guard.demo.topics import TopicPlan, ensure_topics, plan_topics, remove_private_topics
from sharing_guard.demo.traffic import Traffic
from sharing_guard.demo.view import RunInfo, render_summary
from sharing_guard.demo.webhook import WebhookReceiver
from sharing_guard.explain import explain
from sharing_guard.policy_file import load_policy

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DRAIN_S = 10.0
"""After the traffic stops, how long to wait for the decisions still in flight."""
STOP_DIAGNOSIS_S = 75.0
"""After a stop signal, when to print every thread's stack if the demo is still running."""


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m sharing_guard.demo",
        description="Run one guard worker against a broker, send simulated traffic and "
        "show the decisions live.",
    )
    parser.add_argument(
        "--bootstrap",
        default=env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
        help="the broker (host:port[,host:port]); default $KAFKA_BOOTSTRAP_SERVERS or %(default)s",
    )
    parser.add_argument(
        "--own-broker",
        action="store_true",
        help="the broker was started for this demo: use the default topic names "
        "(otherwise every topic gets a private suffix and is removed at the end)",
    )
    parser.add_argument("--broker-label", default="", help="how to name the broker on screen")
    parser.add_argument("--note", default="", help="a caveat about the broker, shown throughout")
    parser.add_argument(
        "--seconds",
        type=float,
        default=env("DEMO_SECONDS") or "0",
        help="how long to send traffic once the guard is ready; 0 = until Ctrl-C "
        "(default $DEMO_SECONDS or 0)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=env("DEMO_RATE") or "200",
        help="events per second (default $DEMO_RATE or 200)",
    )
    parser.add_argument("--seed", type=int, default=env("DEMO_SEED") or "7")
    parser.add_argument("--run-id", default=env("DEMO_RUN_ID") or uuid.uuid4().hex[:8])
    parser.add_argument(
        "--story-every",
        type=float,
        default=60.0,
        help="replay the scripted story every this many seconds; 0 = once (default 60)",
    )
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(env("DEMO_DIR") or ".cache/demo"),
        help="where each run keeps its logs and data, in a directory named after the run "
        "(default $DEMO_DIR or %(default)s)",
    )
    return parser


class _Signals:
    """SIGINT, SIGTERM and SIGHUP only set ``stop``; the main loop does the rest."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.received: str | None = None

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            return  # stopping already (Ctrl-C reaches the demo more than once)
        self.received = signal.Signals(signum).name
        # A stop takes seconds; should it hang, say where every thread is.
        faulthandler.dump_traceback_later(STOP_DIAGNOSIS_S, exit=False)
        # Set from a thread of its own: the handler runs on the main thread between two
        # bytecodes, possibly while that thread holds the Event's lock (seen: a second
        # SIGINT inside the first handler's ``set`` waited for that lock for ever).
        threading.Thread(target=self.stop.set, name="stop-signal", daemon=True).start()


class Demo:
    """One run of the demo; :meth:`run` returns the exit status."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.stop = threading.Event()
        self.signals = _Signals(self.stop)
        self.app_id = f"sharing-guard-demo-{args.run_id}"
        self.plan: TopicPlan = plan_topics("" if args.own_broker else f"demo-{args.run_id}")
        self.workdir = (args.dir / args.run_id).resolve()
        policy = load_policy()
        self.tally = Tally(partial(explain, policy=policy))
        self.guard: ServiceProcess | None = None
        self.services: list[ServiceProcess] = []
        self.audit: AuditSink | None = None
        self.desk: OrderDesk | None = None
        self.webhook: WebhookReceiver | None = None
        self.started_at = datetime.now(UTC)
        self.epilogue: list[str] = []
        self.feed: DecisionFeed | None = None
        self.client: TransferClient | None = None
        self.traffic: Traffic | None = None
        self.problems: list[str] = []
        self.topics_ready = False
        self.info = RunInfo(
            broker=args.broker_label or f"{args.bootstrap} (already running)",
            topics=self.plan.describe(),
            rate=args.rate,
            seconds=args.seconds,
            note=args.note,
        )

    def say(self, text: str) -> None:
        """A progress line."""
        self.write(f"demo: {text}\n")

    def write(self, text: str) -> None:
        """Write to the terminal or pipe, if it is still there (a hang-up or a closed
        pipe must not keep the cleanup from running)."""
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            return

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> int:
        """Prepare, run and clean up; the cleanup always runs."""
        self.signals.install()
        snap: Snapshot | None = None
        try:
            if self._prepare():
                snap = self._show()
        except Exception as exc:  # reported, then cleaned up like any other stop
            name, text = type(exc).__name__, str(exc)
            self.problems.append(text if text.startswith(name) else f"{name}: {text}")
        finally:
            snap = self._finish(snap)
            faulthandler.cancel_dump_traceback_later()
        if self.traffic is not None and self.traffic.started:
            self.write(render_summary(snap, self.info) + "\n")
        else:
            self.say("stopped before any traffic was sent")
        for text in self.epilogue:
            self.write(text)
        for problem in self.problems:
            self.say(f"PROBLEM: {problem}")
        return EXIT_FAILED if self.problems else EXIT_OK

    def _prepare(self) -> bool:
        args = self.args
        self.say(f"run {args.run_id}, broker {self.info.broker}")
        if self.info.note:
            self.say(f"NOTE: {self.info.note}")
        created = ensure_topics(args.bootstrap, self.plan)
        self.topics_ready = True
        self.say(f"topics: {self.plan.describe()}; {len(created)} created")
        self.workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self._start_services()
        for service in self.services:
            problem = service.wait_ready(args.ready_timeout, self.stop)
            if problem:
                if not self.signals.received:
                    self.problems.append(f"{problem} on {self.info.broker}")
                return False
        if not self._start_audit_api():
            return False
        assert self.guard is not None
        assert self.desk is not None
        self.say(
            f"all services ready in {time.monotonic() - started:.1f} s; guard health "
            f"{self.guard.url}/readyz, metrics {self.guard.url}/metrics; order service "
            f"{self.desk.url}/openapi.json"
        )
        self._show_consoles()
        self.info = replace(self.info, guard=f"pid {self.guard.pid}, {self.guard.url}/metrics")
        self.feed = DecisionFeed(args.bootstrap, self.plan.topics.decisions)
        self.client = TransferClient(args.bootstrap, topics=self.plan.topics)
        self.traffic = Traffic(
            self.client,
            self.tally,
            self.stop,
            rate=args.rate,
            seed=args.seed,
            story_every_s=args.story_every,
            desk=self._desk_call,
        )
        duration = f"for {args.seconds:g} s" if args.seconds > 0 else "until Ctrl-C"
        self.say(f"sending about {args.rate:g} events/s {duration}")
        return True

    def _start_services(self) -> None:
        """Start the audit sink, the order service, the alerts service and the guard."""
        args, topics = self.args, self.plan.topics
        self.audit = AuditSink(
            os.environ,
            self.workdir,
            bootstrap=args.bootstrap,
            topic=topics.audit,
            app_id=self.app_id,
        )
        vkey = self.audit.keygen()
        self.say(f"audit sink: signing key made in {self.audit.dir}; verifier key {vkey}")
        self.desk = OrderDesk(os.environ, self.workdir, bootstrap=args.bootstrap, topics=topics)
        self.desk.issue_tokens()
        self.webhook = WebhookReceiver()
        self.webhook.start()
        env = worker_env(
            os.environ,
            bootstrap=args.bootstrap,
            app_id=self.app_id,
            data_dir=self.workdir / "guard-data",
            port=free_port(),
            topics=self.plan.env(),
        )
        self.guard = guard_process(env, self.workdir / "worker.log")
        alerts = alerts_process(
            os.environ,
            self.workdir,
            bootstrap=args.bootstrap,
            topics=self.plan.env(),
            app_id=self.app_id,
            webhook_url=self.webhook.url,
        )
        self.services = [self.audit.ingest(), self.desk.serve(), alerts, self.guard]
        for service in self.services:
            service.start()
            self.say(f"{service.name}: pid {service.pid}, log {service.log_path}")

    def _start_audit_api(self) -> bool:
        """The audit API (and its security console), once the ingest has created the log it
        opens at start."""
        assert self.audit is not None
        deadline = time.monotonic() + self.args.ready_timeout
        while not self.audit.log_exists():
            if self.stop.is_set() or time.monotonic() > deadline:
                self.problems.append("the audit sink created no log; the audit API cannot start")
                return False
            self.stop.wait(0.2)
        api = self.audit.api()
        api.start()
        self.services.append(api)
        self.say(f"{api.name}: pid {api.pid}, log {api.log_path}")
        problem = api.wait_ready(self.args.ready_timeout, self.stop)
        if problem and not self.signals.received:
            self.problems.append(problem)
        return problem is None

    def _show_consoles(self) -> None:
        """Where the two consoles are, and the tokens of this run to sign in with."""
        assert self.audit is not None
        assert self.desk is not None
        self.say(
            f"security console: http://127.0.0.1:{self.audit.api_port}/console/ "
            f"(token {self.audit.token}; pin the verifier key shown above)"
        )
        officers = ", ".join(f"{name}: {token}" for name, token in self.desk.tokens.items())
        self.say(f"officers' console: {self.desk.url}/console/ (tokens {officers})")

    def _desk_call(self, call: DeskCall, run: int) -> None:
        """An officer's call to the order service (from the story thread)."""
        assert self.desk is not None
        status, detail = self.desk.call(call)
        self.tally.desk(call, run, status, detail)

    def _take_alerts(self) -> None:
        if self.webhook is not None:
            for event_id, kind in self.webhook.take():
                self.tally.alerted(event_id, kind)

    def _show(self) -> Snapshot:
        assert self.traffic is not None
        assert self.feed is not None
        assert self.guard is not None
        screen = Screen(self.write, self.info, live=is_terminal(self.out) and not self.args.plain)
        self.tally.restart_clock()
        self.traffic.start()
        deadline = time.monotonic() + self.args.seconds if self.args.seconds > 0 else None
        screen.open()
        snap: Snapshot | None = None
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                exited = next((p for p in self.services if p.exit_code() is not None), None)
                if exited is not None:
                    self.problems.append(f"the {exited.name} exited (status {exited.exit_code()})")
                    break
                self.tally.record(self.feed.poll(100))
                self._take_alerts()
                if screen.due(now):
                    screen.draw(self.tally.snapshot(), now)
            self.stop.set()
            self.traffic.join()
            snap = self._drain()
        finally:
            screen.close(snap)  # the terminal gets its normal screen back, whatever happened
        if self.signals.received:
            self.say(f"stopping: {self.signals.received} received")
        elif deadline is not None and not self.problems:
            self.say(f"stopping: {self.args.seconds:g} s are over")
        return snap

    def _drain(self) -> Snapshot:
        """Wait (a little) for the decisions on what was sent; the final counts."""
        assert self.feed is not None
        if self.client is not None:
            _quietly(self.client.flush)  # a failure to send is reported by the traffic
        deadline = time.monotonic() + DRAIN_S
        snap = self.tally.snapshot()
        while (snap.in_flight or _story_waiting(snap)) and time.monotonic() < deadline:
            if self.guard is not None and self.guard.exit_code() is not None:
                break
            self.tally.record(self.feed.poll(200))
            self._take_alerts()
            snap = self.tally.snapshot()
        return snap

    # --- cleanup ---------------------------------------------------------------------------

    def _finish(self, snap: Snapshot | None) -> Snapshot:
        """Stop everything this run started, whatever happened before."""
        self.stop.set()
        if self.traffic is not None:
            self.traffic.join()
            if self.traffic.error is not None:
                failures = self.traffic.send_failures
                unacked = f" ({failures} transfers not acknowledged)" if failures else ""
                self.problems.append(f"sending failed{unacked}: {self.traffic.error}")
        for closer in (self.client, self.feed):
            if closer is not None:
                _quietly(closer.close)
        for service in reversed(self.services):
            code = service.stop()
            self.say(f"{service.name} stopped (status {code})")
            if self.problems:
                tail = service.log_tail()
                if tail:
                    self.say(f"last lines of the {service.name}'s log:\n{tail}")
        if self.webhook is not None:
            self.webhook.close()
        snap = snap or self.tally.snapshot()
        if self.guard is not None and self.guard.exit_code() is not None and snap.decided:
            self._check_trail(snap)
        if self.plan.private and self.topics_ready:
            try:
                removed = remove_private_topics(self.args.bootstrap, self.plan, self.app_id)
                self.say(f"removed {removed} private topics and the run's consumer groups")
            except Exception as exc:  # the broker may be gone; nothing else to undo
                self.say(f"could not remove the private topics: {exc}")
        if snap.story_failed:
            self.problems.append(f"{snap.story_failed} story steps did not go as expected")
        if self.services:
            logs = ", ".join(sorted({p.log_path.name for p in self.services}))
            self.epilogue.append(f"demo: logs and data kept in {self.workdir} ({logs})\n")
        return snap

    def _check_trail(self, snap: Snapshot) -> None:
        """What the security team would do: the trail holds every decision and verifies;
        one decision's inclusion proof; the transparency report of the run."""
        audit = self.audit
        if audit is None:
            return
        try:
            audit.catch_up()
            verified = audit.verify()
            missing = self.tally.decided_ids() - audit.decided_events()
            vdd = next(
                (
                    line.event_id
                    for line in snap.story
                    if line.got and line.got.startswith("BLOCK VDD_EGRESS_FORBIDDEN")
                ),
                None,
            )
            proof = audit.proof(vdd) if vdd else ""
            report = audit.report(self.started_at, datetime.now(UTC) + timedelta(seconds=1))
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            self.problems.append(f"checking the audit trail failed: {exc}")
            return
        if verified.ok and not missing:
            self.epilogue.append(
                f"demo: audit trail: verify OK ({verified.summary}); every one of the "
                f"{snap.decided} decisions of the run is in it\n"
            )
        elif verified.ok and self.info.note:  # the embedded broker's wrong end offsets
            self.epilogue.append(
                f"demo: audit trail: verify OK ({verified.summary}); {len(missing)} decisions "
                "of the run not ingested by the end (NOTE above: this broker's end offsets are "
                "wrong, so the final catch-up can stop short)\n"
            )
        else:
            self.problems.append(
                f"audit trail: {verified.summary}; {len(missing)} decisions of the run missing"
            )
        if proof:
            self.epilogue.append(
                f"demo: inclusion proof of the Virtual Drive block {vdd} (audit-sink proof "
                f"{vdd}; check it offline against the verifier key):\n{_indented(proof)}"
            )
        self.epilogue.append(
            f"demo: transparency report of the run (audit-sink report):\n{_indented(report)}"
        )


def _indented(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.rstrip("\n").splitlines())


def _story_waiting(snap: Snapshot) -> bool:
    return any(line.got is None for line in snap.story)


def _quietly(close: Callable[[], None]) -> None:
    try:
        close()
    except Exception:  # closing after a broker failure: nothing more to do
        return


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.rate <= 0 or args.seconds < 0:
        print("demo: --rate must be positive and --seconds not negative", file=sys.stderr)
        return EXIT_USAGE
    return Demo(args, sys.stdout).run()
