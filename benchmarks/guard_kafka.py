"""The sharing guard on the real broker: sustained decisions/s and latency, against a baseline.

    .venv/bin/python benchmarks/guard_kafka.py                   # 20,000 transfers, 3 rounds
    .venv/bin/python benchmarks/guard_kafka.py --quick           # 3,000 transfers, 1 round
    .venv/bin/python benchmarks/guard_kafka.py --profile         # + one cProfiled guard run
    .venv/bin/python benchmarks/guard_kafka.py --transfers 5000 \\
        --config "w50 SHARING_GUARD_BATCH_WITHIN_S=0.05" \\
        --config "fix PATCH=change.diff"                         # variants, interleaved

Needs the broker of ``scripts/kafka.sh start`` (``KAFKA_BOOTSTRAP_SERVERS``, default
``127.0.0.1:19092``). Every run gets fresh private topics (``fresh_topics`` of the
integration harness) and its own application id, and deletes them afterwards.

One *run* of an app (the guard, ``python -m sharing_guard.cli worker``, or the baseline,
``benchmarks/guard_baseline.py``; both configured only by ``SHARING_GUARD_*`` variables):

1. governance from :func:`sharing_guard.simulation.simulate` (processors registered,
   consents, rights, orders) and then ``--transfers`` transfers of the same simulation are
   produced to the run's topics and acknowledged *before the worker starts* (all input up
   front; each transfer carries a ``bench.seq`` header);
2. the worker starts. A reader (kafka-python, in this process) reads the run's
   ``decisions`` topic, where the guard publishes each decision and the baseline forwards
   each transfer, both with the input's headers. **Sustained throughput** is
   ``(n - 1) / (t_last - t_first)`` over the reader's receive times of the first and the
   last of the ``n`` outputs (start-up and the first fetch are not in it). Over the same
   window it samples, from /proc, the CPU time of the worker, of the broker and of this
   process, and how long the worker's threads were runnable but waiting for a CPU
   (``schedstat``): **CPU ms per decision** and the **waiting share**;
3. with the worker still running and idle, ``--paced`` more transfers are produced at
   ``--rate`` per second, each with a ``bench.sent`` header holding the producer's wall
   clock just before ``send()``. **Latency** is measured on these, two ways: to the output
   record's Kafka timestamp (CreateTime, stamped by the worker's producer when the worker
   hands it the record: decided, stored, not yet acknowledged) and to the reader's receive
   time (flushes, broker and the reader's fetch included). Under the backlog of step 2 a
   record's latency is only its place in the queue, so none is reported there;
4. the worker is stopped (SIGINT) and the run's topics are deleted.

The guard and the baseline alternate (guard first in even rounds, baseline first in odd
ones) for ``--repeat`` rounds per configuration. The table gives per app the median and
best throughput, the medians of CPU per decision, of latency and of the waiting share,
and the guard/baseline ratio of median throughputs (target: at least 0.8) and of CPU per
decision (baseline over guard: the ratio the throughputs would have if both were
CPU-bound, steadier than throughput on a shared machine). Everything goes to
``benchmarks/out/guard_kafka.json`` (``guard_kafka-quick.json`` for ``--quick``).

``--config 'LABEL KEY=VALUE ...'`` runs both apps with extra environment; ``PATCH=<diff>``
runs them on a copy of ``services/`` with the diff applied (``patch -p1``), through
``PYTHONPATH``: how the changes proposed in the README were measured without editing the
guard. ``--timings`` runs the guard in-process (``_worker`` below) with wall-clock timers
around its batch steps and counters of produce requests; ``--profile`` adds one such run
under cProfile (the thread CPU clock; every thread; the main thread from its first batch
on) and writes the profile tables next to the JSON. These hooks are the benchmark's own:
the guard's code is not changed. See ``benchmarks/README.md``, "Guard on Kafka".
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from guard_harness import GuardProcess, fresh_topics, guard_env  # noqa: E402
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer  # noqa: E402
from sharing_guard.client import route  # noqa: E402
from sharing_guard.codec import contract_registry  # noqa: E402
from sharing_guard.contract import Event, TransferRequested  # noqa: E402
from sharing_guard.settings import Topics  # noqa: E402
from sharing_guard.simulation import simulate  # noqa: E402

DEFAULT_OUT = HERE / "out" / "guard_kafka.json"
QUICK_OUT = HERE / "out" / "guard_kafka-quick.json"
TARGET_RATIO = 0.8
SEQ, SENT = "bench.seq", "bench.sent"
TICKS = os.sysconf("SC_CLK_TCK")
APPS = {
    "guard": ("-m", "sharing_guard.cli", "worker"),
    "baseline": (str(HERE / "guard_baseline.py"), "worker"),
    "guard-inprocess": (str(Path(__file__).resolve()), "_worker"),
}

Record = tuple[str, bytes, bytes]  # (field of Topics, key, value)


# -- the workload ---------------------------------------------------------------------------


@dataclass
class Workload:
    """Pre-encoded records: governance first, then the backlog, then the paced tail."""

    governance: list[Record]
    backlog: list[Record]
    paced: list[Record]
    mix: dict[str, Any]


def workload(transfers: int, paced: int, seed: int) -> Workload:
    """The first ``transfers + paced`` transfers of a simulation and its governance before."""
    wanted = transfers + paced
    count = int(wanted / 0.85) + 200
    while True:
        events = simulate(count, seed)
        positions = [i for i, e in enumerate(events) if isinstance(e, TransferRequested)]
        if len(positions) >= wanted:
            break
        count = int(count * 1.2)
    events = events[: positions[wanted - 1] + 1]
    registry = contract_registry()
    fields = Topics(**{name: name for name in Topics.model_fields})

    def record(event: Event) -> Record:
        topic, key = route(event, fields)
        return topic, key.encode(), registry.encode(event)

    moves = [e for e in events if isinstance(e, TransferRequested)]
    encoded = [record(e) for e in moves]
    return Workload(
        governance=[record(e) for e in events if not isinstance(e, TransferRequested)],
        backlog=encoded[:transfers],
        paced=encoded[transfers:],
        mix={
            "seed": seed,
            "by_type": dict(Counter(e.type for e in events).most_common()),
            "law_enforcement_with_order": sum(1 for t in moves if t.order_ref is not None),
            "redelivered_event_ids": len(moves) - len({t.event_id for t in moves}),
        },
    )


def new_producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        linger_ms=0,
        batch_size=256 * 1024,
        max_in_flight_requests_per_connection=1,
        retries=5,
    )


def produce(
    producer: KafkaProducer, topics: Topics, records: Sequence[Record], seq0: int | None
) -> None:
    """Send ``records`` (numbered from ``seq0`` in a header, if given) and wait for the acks."""
    for i, (name, key, value) in enumerate(records):
        headers = [] if seq0 is None else [(SEQ, str(seq0 + i).encode())]
        producer.send(getattr(topics, name), key=key, value=value, headers=headers)
    producer.flush(timeout=120)


def produce_paced(
    producer: KafkaProducer, topics: Topics, records: Sequence[Record], seq0: int, rate: float
) -> None:
    """Send ``records`` at ``rate`` per second, each stamped with its send time."""
    start = time.monotonic()
    for i, (name, key, value) in enumerate(records):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        headers = [(SEQ, str(seq0 + i).encode()), (SENT, str(time.time_ns()).encode())]
        producer.send(getattr(topics, name), key=key, value=value, headers=headers)
    producer.flush(timeout=120)


# -- processes and their CPU ----------------------------------------------------------------


def cpu_of(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def run_queue_wait(pid: int | None) -> float | None:
    """Seconds the threads of a process spent runnable but waiting for a CPU (schedstat)."""
    if pid is None:
        return None
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    except OSError:
        return None
    return total / 1e9


def broker_pid() -> int | None:
    """The broker's process id, as ``scripts/kafka.sh status`` reports it."""
    try:
        done = subprocess.run(
            [str(ROOT / "scripts" / "kafka.sh"), "status"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    found = re.search(r"pid (\d+)", done.stdout + done.stderr)
    return int(found.group(1)) if found else None


@dataclass(frozen=True)
class Sample:
    """CPU seconds of the worker, the broker and this process; the worker's wait for a CPU."""

    worker: float | None
    broker: float | None
    reader: float
    worker_waiting: float | None
    load: float

    @classmethod
    def take(cls, worker: int, broker: int | None) -> Sample:
        return cls(
            cpu_of(worker),
            cpu_of(broker),
            time.process_time(),
            run_queue_wait(worker),
            os.getloadavg()[0],
        )


def _delta(start: float | None, end: float | None, per: float) -> float | None:
    if start is None or end is None or per <= 0:
        return None
    return round((end - start) / per, 4)


@dataclass
class Worker(GuardProcess):
    """A worker process started with ``command`` (after the interpreter)."""

    command: tuple[str, ...] = APPS["guard"]

    def start(self) -> Worker:
        env = {**self.env, "SHARING_GUARD_WEB_PORT": str(self.port)}
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, *self.command],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        return self

    def stop_gently(self, timeout_s: float = 60) -> None:
        """SIGINT (the in-process worker then writes its profile), else SIGTERM, SIGKILL."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.stop()


# -- reading the outputs --------------------------------------------------------------------


@dataclass
class Seen:
    timestamp_ms: int
    received_s: float
    sent_ns: int | None
    value: bytes


class OutputReader:
    """Reads the decisions topic from the beginning; keeps the first output per seq."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap.split(","),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
            max_poll_records=20_000,
            # kafka-python checks CRCs in pure Python here (no crc32c module): ~1 ms of CPU
            # per record, taken from the worker and broker on a 2-CPU machine
            check_crcs=False,
        )
        self.seen: dict[int, Seen] = {}
        self.repeated = 0

    def poll(self, timeout_ms: int = 100) -> int:
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        now = time.time()
        new = 0
        for records in batches.values():
            for r in records:
                headers = dict(r.headers or [])
                seq = headers.get(SEQ)
                if seq is None:
                    continue
                if int(seq) in self.seen:
                    self.repeated += 1
                    continue
                sent = headers.get(SENT)
                self.seen[int(seq)] = Seen(r.timestamp, now, int(sent) if sent else None, r.value)
                new += 1
        return new

    def wait_all(
        self,
        seqs: range,
        worker: Worker,
        timeout_s: float,
        on_first: Callable[[], None] | None = None,
    ) -> None:
        """Read until every seq in ``seqs`` was seen (``on_first`` at the first output)."""
        deadline = time.monotonic() + timeout_s
        missing = set(seqs)
        while missing:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{len(missing)} of {len(seqs)} outputs missing after {timeout_s:.0f}s; "
                    f"worker log: {worker.log}"
                )
            assert worker.process is not None
            if worker.process.poll() is not None:
                raise RuntimeError(f"worker exited: {worker.log.read_text()[-3000:]}")
            if self.poll():
                if on_first is not None:
                    on_first()
                    on_first = None
                missing.difference_update(self.seen.keys() & missing)

    def close(self) -> None:
        self.consumer.close()


def percentiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": round(ordered[-1], 2)}


def outcomes(seen: Sequence[Seen]) -> dict[str, Any]:
    """The guard's decisions by outcome, and how many were guard faults."""
    registry = contract_registry()
    counts: Counter[str] = Counter()
    faults = 0
    for s in seen:
        decision = registry.decode(s.value)
        counts[decision.outcome.value] += 1
        faults += any(c.value == "GUARD_ERROR" for c in decision.codes)
    return {"by_outcome": dict(counts), "guard_errors": faults}


# -- one run --------------------------------------------------------------------------------


@dataclass
class Config:
    label: str
    env: dict[str, str] = field(default_factory=dict)
    patch: str | None = None


def delete_run_topics(bootstrap: str, suffix: str, app_id: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        names = [t for t in admin.list_topics() if t.endswith("." + suffix) or t.startswith(app_id)]
        if names:
            admin.delete_topics(names)
    except Exception as exc:  # cleanup only: report, never fail the benchmark on it
        print(f"  (could not delete the topics of run {suffix}: {exc})", file=sys.stderr)
    finally:
        admin.close()


def backlog_phase(reader: OutputReader, worker: Worker, n: int, timeout_s: float) -> dict[str, Any]:
    """Throughput and CPU over the window from the first to the last of ``n`` outputs."""
    assert worker.process is not None
    pid, broker = worker.process.pid, broker_pid()
    started = time.time()
    marks: list[Sample] = []
    reader.wait_all(range(n), worker, timeout_s, lambda: marks.append(Sample.take(pid, broker)))
    end, start = Sample.take(pid, broker), marks[0]
    seen = [reader.seen[i] for i in range(n)]
    t_first = min(s.received_s for s in seen)
    span = max(s.received_s for s in seen) - t_first
    ts_span = (max(s.timestamp_ms for s in seen) - min(s.timestamp_ms for s in seen)) / 1000
    per_decision = (n - 1) / 1000  # seconds of CPU over this: ms per decision
    return {
        "transfers": n,
        "span_s": round(span, 3),
        "decisions_per_s": round((n - 1) / span, 1) if span > 0 else None,
        "decisions_per_s_by_record_timestamps": round((n - 1) / ts_span, 1)
        if ts_span > 0
        else None,
        "first_output_after_start_s": round(t_first - started, 2),
        "cpu_ms_per_decision": {
            "worker": _delta(start.worker, end.worker, per_decision),
            "broker": _delta(start.broker, end.broker, per_decision),
            "reader": _delta(start.reader, end.reader, per_decision),
        },
        "cpu_share_in_window": {
            "worker": _delta(start.worker, end.worker, span),
            "broker": _delta(start.broker, end.broker, span),
            "reader": _delta(start.reader, end.reader, span),
        },
        "worker_waiting_for_cpu_share": _delta(start.worker_waiting, end.worker_waiting, span),
        "loadavg_1m": [round(start.load, 2), round(end.load, 2)],
    }


def paced_phase(
    reader: OutputReader,
    worker: Worker,
    sender: threading.Thread,
    load: Workload,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Latency of transfers produced (by ``sender``) at a steady rate to the idle worker."""
    n, m = len(load.backlog), len(load.paced)
    worker.wait_ready(timeout_s=60)
    sender.start()
    reader.wait_all(range(n, n + m), worker, args.timeout)
    sender.join()
    paced = [reader.seen[i] for i in range(n, n + m) if reader.seen[i].sent_ns is not None]
    return {
        "count": m,
        "rate_per_s": args.rate,
        "latency_ms_to_output_timestamp": percentiles(
            [s.timestamp_ms - s.sent_ns / 1e6 for s in paced if s.sent_ns]
        ),
        "latency_ms_to_reader": percentiles(
            [s.received_s * 1000 - s.sent_ns / 1e6 for s in paced if s.sent_ns]
        ),
    }


def one_run(
    app: str,
    config: Config,
    load: Workload,
    args: argparse.Namespace,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    topics = fresh_topics(args.bootstrap)
    suffix = topics.transfers.rsplit(".", 1)[1]
    app_id = f"bench-{app}-{suffix}"
    tmp = Path(tempfile.mkdtemp(prefix=f"guard-kafka-{app}-"))
    env = guard_env(args.bootstrap, topics, app_id, tmp / "data")
    env.update(config.env)
    env.update(extra_env or {})
    if app == "guard-inprocess":  # its timers go next to its log, read back below
        env["BENCH_TIMINGS"] = str(tmp / "timings.json")
    worker = Worker(env=env, log=tmp / "worker.log", command=APPS[app])
    producer = new_producer(args.bootstrap)
    reader: OutputReader | None = None
    n = len(load.backlog)
    try:
        produce(producer, topics, load.governance, None)
        produce(producer, topics, load.backlog, 0)
        reader = OutputReader(args.bootstrap, topics.decisions)
        worker.start()
        result: dict[str, Any] = {"app": app, "config": config.label}
        result.update(backlog_phase(reader, worker, n, args.timeout))
        sender = threading.Thread(
            target=produce_paced, args=(producer, topics, load.paced, n, args.rate)
        )
        result["paced"] = paced_phase(reader, worker, sender, load, args)
        result["repeated_outputs"] = reader.repeated
        if app.startswith("guard"):
            result["outcomes"] = outcomes(list(reader.seen.values()))
    finally:
        if reader is not None:
            reader.close()
        producer.close(timeout=10)
        worker.stop_gently()
        delete_run_topics(args.bootstrap, suffix, app_id)
    timings = tmp / "timings.json"
    if timings.exists():
        result["timings"] = json.loads(timings.read_text())
    if args.keep_logs:
        result["log_dir"] = str(tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


# -- the in-process worker: the benchmark's own timers and profiler --------------------------


@types.coroutine
class Timers:
    """Wall-clock totals of the guard's batch steps, batch sizes, produce requests, CPU per
    thread over the window of batches; ``on_first_batch`` is called at the first batch."""

    def __init__(self) -> None:
        self.total: defaultdict[str, float] = defaultdict(float)
        self.count: defaultdict[str, int] = defaultdict(int)
        self.batch_sizes: list[int] = []
        self.longest: defaultdict[str, float] = defaultdict(float)
        self.state_ends: Any = None
        self.in_decide = False
        self.first_decide: float | None = None
        self.last_decide_end: float | None = None
        self.threads_first: dict[str, float] = {}
        self.threads_last: dict[str, float] = {}
        self.threads_last_at = 0.0
        self.on_first_batch: Callable[[], None] | None = None

    def add(self, name: str, started: float) -> None:
        took = time.perf_counter() - started
        self.total[name] += took
        self.count[name] += 1
        self.longest[name] = max(self.longest[name], took)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        if not asyncio.iscoroutinefunction(fn):

            def timed_sync(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.add(name, started)

            return timed_sync

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.add(name, started)

        return timed

    @staticmethod
    def threads() -> dict[str, float]:
        names = {t.native_id: t.name for t in threading.enumerate()}
        out: dict[str, float] = {}
        for task in Path("/proc/self/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            name = names.get(int(task.name), f"native-{task.name}")
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
        return out

    def instrument(self, worker: Any) -> None:
        self._instrument_worker(worker)
        self._instrument_producer()

    def _instrument_worker(self, worker: Any) -> None:
        loop = worker.loop
        process = loop._process

        async def timed_process(records: Any) -> Any:
            now = time.perf_counter()
            if self.first_decide is None:
                self.first_decide = now
                self.threads_first = self.threads()
                if self.on_first_batch is not None:
                    self.on_first_batch()
            elif self.last_decide_end is not None:
                self.total["between batches (getmany)"] += now - self.last_decide_end
            self.batch_sizes.append(sum(len(rs) for rs in records.values()))
            self.in_decide = True
            try:
                return await process(records)
            finally:
                self.in_decide = False
                self.add("_process (one batch)", now)
                self.last_decide_end = time.perf_counter()
                if self.last_decide_end - self.threads_last_at > 0.5:
                    self.threads_last = self.threads()
                    self.threads_last_at = self.last_decide_end

        loop._process = timed_process
        for name in ("_catch_up_accounts", "_catch_up", "_flush"):
            setattr(loop, name, self.wrap(name, getattr(loop, name)))
        processor = loop.processor
        for name in ("apply_governance", "decode_transfers", "decide_transfers"):
            setattr(processor, name, self.wrap(name, getattr(processor, name)))
        loop.state_ends._read = self.wrap("end_offsets (ListOffsets)", loop.end_offsets.__call__)
        self.state_ends = loop.state_ends

    def _instrument_producer(self) -> None:
        from aiokafka.producer import sender as aiokafka_sender

        produce_request = aiokafka_sender.Sender._send_produce_req

        async def counted_produce_request(sender: Any, node_id: Any, batches: Any) -> Any:
            started = time.perf_counter()
            self.count["produce requests"] += 1
            self.count["records in produce requests"] += sum(
                b.record_count for b in batches.values()
            )
            try:
                return await produce_request(sender, node_id, batches)
            finally:
                self.total["produce request round trips"] += time.perf_counter() - started

        aiokafka_sender.Sender._send_produce_req = counted_produce_request  # type: ignore[method-assign,assignment]

    def report(self) -> dict[str, Any]:
        window = None
        if self.first_decide is not None and self.last_decide_end is not None:
            window = round(self.last_decide_end - self.first_decide, 3)
        sizes = sorted(self.batch_sizes)
        requests = self.count.get("produce requests", 0)
        return {
            "window_s": window,
            "batches": len(sizes),
            "batch_size": {
                "mean": round(statistics.fmean(sizes), 1) if sizes else None,
                "p50": sizes[len(sizes) // 2] if sizes else None,
                "max": sizes[-1] if sizes else None,
            },
            "records_per_produce_request": round(
                self.count.get("records in produce requests", 0) / requests, 1
            )
            if requests
            else None,
            "state end offsets": {
                "read": getattr(self.state_ends, "requests", None),
                "shared": getattr(self.state_ends, "shared", None),
            },
            "wall_s": {k: round(v, 3) for k, v in sorted(self.total.items())},
            "longest_ms": {k: round(v * 1000, 1) for k, v in sorted(self.longest.items())},
            "calls": dict(sorted(self.count.items())),
            "thread_cpu_s_in_window": {
                name: round(cpu - self.threads_first.get(name, 0.0), 2)
                for name, cpu in self.threads_last.items()
            },
        }


class ThreadProfiles:
    """One cProfile profiler per thread, on the thread's CPU clock by default: cProfile's
    own clock is wall time, which charges a call with the time its thread was preempted
    inside it (on two busy CPUs, often)."""

    def __init__(self, clock: str = "cpu") -> None:
        self.profiles: dict[str, cProfile.Profile] = {}
        self.lock = threading.Lock()
        self.timer = time.thread_time if clock == "cpu" else time.perf_counter

    def start(self) -> None:
        """Profile every thread started from now on (the main one: see :meth:`main`)."""
        threading.setprofile(self._hook)

    def main(self) -> None:
        """Profile the calling thread from now on (the worker calls it at its first batch,
        so that start-up, with the metadata of every topic on the broker, is left out)."""
        if threading.current_thread().name not in self.profiles:
            profile = cProfile.Profile(self.timer)
            self.profiles[threading.current_thread().name] = profile
            profile.enable()

    def _hook(self, frame: Any, event: str, arg: Any) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile(self.timer)
        with self.lock:
            self.profiles[threading.current_thread().name] = profile
        profile.enable()

    def dump(self, prefix: str) -> None:
        threading.setprofile(None)
        for name, profile in list(self.profiles.items()):
            profile.dump_stats(f"{prefix}.{re.sub(r'[^A-Za-z0-9_-]', '_', name)}.prof")


def run_inprocess_worker() -> int:
    """The guard worker as ``sharing_guard.bootstrap`` builds and runs it, with the hooks
    ``BENCH_TIMINGS=<file>`` (timers) and ``BENCH_PROFILE=<prefix>`` (cProfile)."""
    import faust
    from sharing_guard import bootstrap

    timings = os.environ.get("BENCH_TIMINGS")
    profile = os.environ.get("BENCH_PROFILE")
    from sharing_guard.settings import GuardSettings
    from sharing_guard.stream.preflight import preflight

    settings = GuardSettings()
    worker = bootstrap.build_worker(asyncio.run(preflight(settings)), settings)
    timers = Timers()
    profiles = ThreadProfiles(os.environ.get("BENCH_PROFILE_CLOCK", "cpu"))
    if timings or profile:
        timers.instrument(worker)
    if profile:
        profiles.start()
        timers.on_first_batch = profiles.main
    try:
        if hasattr(bootstrap, "faust_worker"):  # as bootstrap.run_worker runs it
            runner = bootstrap.faust_worker(worker.app, worker.settings.log_level)
        else:
            runner = faust.Worker(worker.app, loglevel=worker.settings.log_level, quiet=True)
        runner.execute_from_commandline()
    finally:
        if profile:
            profiles.dump(profile)
        if timings:
            Path(timings).write_text(json.dumps(timers.report(), indent=2))
    return 0


SELECTED = (
    r"processing.py:\d+\((_publish|_audit|_evaluate|decode_transfers|decide_transfers"
    r"|apply_governance|decide_order_requests)\)",
    r"loop.py:\d+\((_process|_catch_up|_catch_up_accounts|_flush)\)",
    r"store.py:\d+\((get|apply)\)",
    r"telemetry.py:\d+\((record_decisions|trace_context)\)",
    r"opentelemetry/sdk/trace/__init__.py:\d+\(start_span\)",
    r"audit_trail.py:\d+\(audit_avro_record\)",
    r"sharing_guard/codec.py:\d+\((encode|encode_record|decode)\)",
    r"outbox.py:\d+\(send\)",
    r"aiokafka/producer/producer.py:\d+\(send\)",
    r"aiokafka/producer/sender.py:\d+\((_send_produce_req|handle_response)\)",
    r"aiokafka/conn.py:\d+\((_read|send)\)",
    r"logging/__init__.py:\d+\(debug\)",
)


def profile_report(prefix: Path, top: int) -> str:
    """Per thread: a selection of functions by inclusive time, and the top by own time."""
    out = io.StringIO()
    for path in sorted(prefix.parent.glob(prefix.name + ".*.prof")):
        stats = pstats.Stats(str(path), stream=out)
        total = stats.total_tt  # type: ignore[attr-defined]
        out.write(f"\n===== {path.name}: {total:.2f} s profiled (CPU clock unless said) =====\n")
        if total < 0.5:
            continue
        rows = sorted(
            (
                (ct, tt, nc, f"{file.split('site-packages/')[-1]}:{line}({name})")
                for (file, line, name), (_, nc, tt, ct, _) in stats.stats.items()  # type: ignore[attr-defined]
            ),
            reverse=True,
        )
        out.write("--- selected functions, inclusive time (a coroutine: while it runs) ---\n")
        for pattern in SELECTED:
            for ct, _own, nc, name in rows:
                if re.search(pattern, name):
                    out.write(f"{ct:8.2f} s {100 * ct / total:5.1f}%  n={nc:>7}  {name}\n")
        out.write(f"--- top {top} by own time ---\n")
        stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -- the report -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    def field_of(path: str, name: str) -> str | None:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            return None
        return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(name)), None)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=ROOT, check=False
        ).stdout.strip()

    packages = ("faust-streaming", "aiokafka", "kafka-python", "pydantic", "opentelemetry-sdk")
    return {
        "cpu_model": field_of("/proc/cpuinfo", "model name") or platform.processor(),
        "logical_cpus": os.cpu_count(),
        "memory_total": field_of("/proc/meminfo", "MemTotal"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {p: metadata.version(p) for p in packages},
        "git": git("rev-parse", "--short", "HEAD")
        + ("+dirty" if git("status", "--porcelain") else ""),
    }


def _median(values: Any) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def summarise(runs: list[dict[str, Any]], configs: Sequence[Config]) -> list[dict[str, Any]]:
    rows = []
    for config in configs:
        by_app: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in runs:
            if r["config"] == config.label:
                by_app[r["app"]].append(r)
        mine = []
        for app, rs in by_app.items():
            rates = [r["decisions_per_s"] for r in rs if r["decisions_per_s"]]
            lat = [r["paced"]["latency_ms_to_output_timestamp"] for r in rs]
            lat_r = [r["paced"]["latency_ms_to_reader"] for r in rs]
            mine.append(
                {
                    "config": config.label,
                    "app": app,
                    "runs": len(rs),
                    "decisions_per_s_median": round(statistics.median(rates), 1),
                    "decisions_per_s_best": max(rates),
                    "decisions_per_s_all": rates,
                    "cpu_ms_per_decision_worker": _median(
                        r["cpu_ms_per_decision"]["worker"] for r in rs
                    ),
                    "cpu_ms_per_decision_broker": _median(
                        r["cpu_ms_per_decision"]["broker"] for r in rs
                    ),
                    "worker_waiting_for_cpu_share": _median(
                        r["worker_waiting_for_cpu_share"] for r in rs
                    ),
                    "latency_ms_p50": _median(x.get("p50") for x in lat),
                    "latency_ms_p99": _median(x.get("p99") for x in lat),
                    "latency_to_reader_ms_p50": _median(x.get("p50") for x in lat_r),
                    "latency_to_reader_ms_p99": _median(x.get("p99") for x in lat_r),
                }
            )
        base = next((row for row in mine if row["app"] == "baseline"), None)
        for row in mine:
            if row["app"].startswith("guard") and base is not None:
                row["ratio_to_baseline"] = round(
                    row["decisions_per_s_median"] / base["decisions_per_s_median"], 3
                )
                # Round by round (the two runs of a round are minutes apart, so a drift of
                # the machine moves both): steadier than the ratio of the medians.
                pairs = zip(by_app[row["app"]], by_app["baseline"], strict=False)
                by_round = [
                    round(g["decisions_per_s"] / b["decisions_per_s"], 3)
                    for g, b in pairs
                    if g["decisions_per_s"] and b["decisions_per_s"]
                ]
                row["ratio_to_baseline_by_round"] = by_round
                if by_round:
                    row["ratio_to_baseline_round_median"] = round(statistics.median(by_round), 3)
                if row["cpu_ms_per_decision_worker"] and base["cpu_ms_per_decision_worker"]:
                    row["cpu_ratio_to_baseline"] = round(
                        base["cpu_ms_per_decision_worker"] / row["cpu_ms_per_decision_worker"], 3
                    )
        rows.extend(mine)
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    def num(value: Any, digits: int = 0) -> str:
        return "" if value is None else f"{value:,.{digits}f}"

    lines = [
        "| config | app | dec/s median | dec/s best | guard/baseline (by CPU) "
        "| guard/baseline by round: median (each) "
        "| worker CPU ms/dec | broker CPU ms/dec | waiting for CPU "
        "| latency p50 / p99 ms | to reader p50 / p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = rounds = ""
        if "ratio_to_baseline" in r:
            ratio = f"**{r['ratio_to_baseline']:.2f}** ({num(r.get('cpu_ratio_to_baseline'), 2)})"
        if r.get("ratio_to_baseline_by_round"):
            each = ", ".join(f"{x:.2f}" for x in r["ratio_to_baseline_by_round"])
            rounds = f"{r['ratio_to_baseline_round_median']:.2f} ({each})"
        lines.append(
            f"| {r['config']} | {r['app']} | {num(r['decisions_per_s_median'])} "
            f"| {num(r['decisions_per_s_best'])} | {ratio} | {rounds} "
            f"| {num(r['cpu_ms_per_decision_worker'], 2)} "
            f"| {num(r['cpu_ms_per_decision_broker'], 2)} "
            f"| {num(r['worker_waiting_for_cpu_share'], 2)} "
            f"| {num(r['latency_ms_p50'], 0)} / {num(r['latency_ms_p99'], 0)} "
            f"| {num(r['latency_to_reader_ms_p50'], 0)} / {num(r['latency_to_reader_ms_p99'], 0)} |"
        )
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------


def parse_config(text: str) -> Config:
    """``LABEL KEY=VALUE ...``; the key ``PATCH`` names a diff (see the module docstring)."""
    label, *pairs = text.split()
    config = Config(label)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"not KEY=VALUE: {pair!r}")
        if key == "PATCH":
            config.patch = value
        else:
            config.env[key] = value
    return config


def overlay(patch: str) -> Path:
    """A copy of ``services/`` with ``patch`` applied; returns its root (``services`` inside)."""
    root = Path(tempfile.mkdtemp(prefix="guard-kafka-overlay-"))
    shutil.copytree(
        ROOT / "services",
        root / "services",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    with open(patch, "rb") as diff:
        subprocess.run(["patch", "-p1", "-s", "-d", str(root)], stdin=diff, check=True)
    return root


def arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--transfers", type=int, default=20_000, help="backlog per run")
    p.add_argument("--repeat", type=int, default=3, help="rounds per configuration")
    p.add_argument("--paced", type=int, default=1_000, help="transfers of the latency phase")
    p.add_argument("--rate", type=float, default=100.0, help="their rate, per second")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="3,000 transfers, one round")
    p.add_argument(
        "--config",
        action="append",
        type=parse_config,
        default=[],
        help="'LABEL KEY=VALUE ...': environment of both apps (repeatable); PATCH=<diff>",
    )
    p.add_argument("--apps", default="guard,baseline", help="comma-separated: guard, baseline")
    p.add_argument("--timings", action="store_true", help="guard runs in-process, with timers")
    p.add_argument("--profile", action="store_true", help="add one cProfiled guard run")
    p.add_argument("--profile-top", type=int, default=40)
    p.add_argument("--timeout", type=float, default=600.0, help="longest wait for outputs, s")
    p.add_argument("--keep-logs", action="store_true")
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    )
    args = p.parse_args(argv)
    if args.quick:
        args.transfers, args.repeat, args.paced, args.rate = 3_000, 1, 300, 100.0
    args.out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    return args


def _line(round_: int, result: dict[str, Any]) -> str:
    lat = result["paced"]["latency_ms_to_output_timestamp"]
    cpu = result["cpu_ms_per_decision"]
    return (
        f"round {round_} {result['config']:>16} {result['app']:>15}: "
        f"{result['decisions_per_s'] or 0:>7,.0f} dec/s over {result['span_s']:5.1f} s, "
        f"CPU ms/dec worker {cpu['worker']} broker {cpu['broker']}, "
        f"waiting for CPU {result['worker_waiting_for_cpu_share']}, "
        f"latency p50 {lat.get('p50')} p99 {lat.get('p99')} ms"
    )


def run_all(
    args: argparse.Namespace, configs: Sequence[Config], apps: Sequence[str], load: Workload
) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for round_ in range(args.repeat):
        for ci, config in enumerate(configs):
            order = list(apps) if (round_ + ci) % 2 == 0 else list(reversed(apps))
            for app in order:
                result = one_run(app, config, load, args)
                runs.append(result)
                print(_line(round_ + 1, result), flush=True)
                if "timings" in result:
                    print("    " + json.dumps(result["timings"]), flush=True)
    if args.profile:
        prefix = Path(tempfile.mkdtemp(prefix="guard-kafka-profile-")) / "guard"
        result = one_run("guard-inprocess", configs[0], load, args, {"BENCH_PROFILE": str(prefix)})
        result["profiled"] = True
        runs.append(result)
        profile_out = args.out.with_name(args.out.stem + "-profile.txt")
        profile_out.parent.mkdir(parents=True, exist_ok=True)
        profile_out.write_text(profile_report(prefix, args.profile_top))
        print(_line(0, result) + f"  [cProfile on; tables in {profile_out}]", flush=True)
        print("    " + json.dumps(result.get("timings")), flush=True)
        shutil.rmtree(prefix.parent, ignore_errors=True)
    return runs


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_worker"]:
        return run_inprocess_worker()
    # SIGTERM as SIGINT: stop the worker and delete the run's topics on the way out
    signal.signal(signal.SIGTERM, _interrupt)
    args = arguments(argv)
    configs = args.config or [Config("defaults")]
    apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    if args.timings:
        apps = ["guard-inprocess" if a == "guard" else a for a in apps]
    unknown = [a for a in apps if a not in APPS]
    if unknown:
        raise SystemExit(f"unknown app(s): {unknown}")
    overlays = []
    for config in configs:
        if config.patch:
            overlays.append(overlay(config.patch))
            config.env["PYTHONPATH"] = str(overlays[-1] / "services")
    load = workload(args.transfers, args.paced, args.seed)
    print(
        f"{len(load.governance)} governance events, {len(load.backlog)} transfers up front, "
        f"{len(load.paced)} paced at {args.rate:g}/s; broker {args.bootstrap}; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    started = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        runs = run_all(args, configs, apps, load)
    finally:
        for root in overlays:
            shutil.rmtree(root, ignore_errors=True)
    rows = summarise([r for r in runs if not r.get("profiled")], configs)
    print()
    print(table(rows))
    report = {
        "benchmark": "guard_kafka",
        "started": started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "arguments": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
            if k != "config"
        },
        "configs": [{"label": c.label, "env": c.env, "patch": c.patch} for c in configs],
        "machine": machine(),
        "workload": load.mix,
        "target_ratio": TARGET_RATIO,
        "summary": rows,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
