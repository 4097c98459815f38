"""``python -m sharing_guard.demo``: topics, one guard worker, traffic and the live view.

``scripts/demo.sh`` (``make demo``) starts or picks the broker and runs this with its
address. In order: create the topics (defaults on a broker started for the demo with
``--own-broker``, a private ``.demo-<run id>`` suffix otherwise), start the worker and
wait for ``/readyz``, then send traffic and show the decisions until ``--seconds`` have
passed or a signal (Ctrl-C, SIGTERM, SIGHUP) arrives; then stop the traffic, wait a
little for the last decisions, stop the worker, remove private topics and print the
summary. Signals only ask to stop: the cleanup always runs to its end.

Exit status: 0 when the run went as planned; 1 when the guard did not start or died,
sending failed, or a story step was decided otherwise than expected; 2 on bad arguments.
"""

import argparse
import faulthandler
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TextIO

from sharing_guard.client import TransferClient
from sharing_guard.demo.feed import DecisionFeed
from sharing_guard.demo.guard import GuardProcess, free_port, worker_env
from sharing_guard.demo.screen import Screen, is_terminal
from sharing_guard.demo.tally import Snapshot, Tally
from sharing_guard.demo.topics import TopicPlan, ensure_topics, plan_topics, remove_private_topics
from sharing_guard.demo.traffic import Traffic
from sharing_guard.demo.view import RunInfo, render_summary
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
        "--keep", action="store_true", help="keep the worker's log and data directory"
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
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.app_id}-"))
        policy = load_policy()
        self.tally = Tally(partial(explain, policy=policy))
        self.guard: GuardProcess | None = None
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
        env = worker_env(
            os.environ,
            bootstrap=args.bootstrap,
            app_id=self.app_id,
            data_dir=self.workdir / "guard-data",
            port=free_port(),
            topics=self.plan.env(),
        )
        self.guard = GuardProcess(env, self.workdir / "worker.log")
        started = time.monotonic()
        self.guard.start()
        self.say(
            f"guard: sharing-guard worker, pid {self.guard.pid}, app id {self.app_id}, "
            f"log {self.guard.log_path}"
        )
        problem = self.guard.wait_ready(args.ready_timeout, self.stop)
        if problem:
            if not self.signals.received:
                self.problems.append(f"{problem} on {self.info.broker}")
            return False
        self.say(
            f"guard ready in {time.monotonic() - started:.1f} s "
            f"(health {self.guard.url}/readyz, metrics {self.guard.url}/metrics)"
        )
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
        )
        duration = f"for {args.seconds:g} s" if args.seconds > 0 else "until Ctrl-C"
        self.say(f"sending about {args.rate:g} events/s {duration}")
        return True

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
                code = self.guard.exit_code()
                if code is not None:
                    self.problems.append(f"the guard worker exited (status {code})")
                    break
                self.tally.record(self.feed.poll(100))
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
        if self.guard is not None:
            code = self.guard.stop()
            self.say(f"guard worker stopped (status {code})")
            if self.problems:
                tail = self.guard.log_tail()
                if tail:
                    self.say(f"last lines of the worker log ({self.guard.log_path}):\n{tail}")
        if self.plan.private and self.topics_ready:
            try:
                removed = remove_private_topics(self.args.bootstrap, self.plan, self.app_id)
                self.say(f"removed {removed} private topics")
            except Exception as exc:  # the broker may be gone; nothing else to undo
                self.say(f"could not remove the private topics: {exc}")
        snap = snap or self.tally.snapshot()
        if snap.story_failed:
            self.problems.append(f"{snap.story_failed} story steps were not decided as expected")
        if self.guard is not None and (self.problems or self.args.keep):
            self.say(f"kept the worker's log and data in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return snap


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
