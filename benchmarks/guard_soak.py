"""Soak of one guard worker on the real broker: flat memory and bounded restarts.

    .venv/bin/python benchmarks/guard_soak.py                 # 500,000 transfers
    .venv/bin/python benchmarks/guard_soak.py --quick         # 60,000 transfers: a smoke run
    .venv/bin/python benchmarks/guard_soak.py --window-s 120 --retention-s 90

Needs the broker of ``scripts/kafka.sh start`` (``KAFKA_BOOTSTRAP_SERVERS``). On fresh
topics (transfers and order requests with ``retention.ms`` of ``--retention-s``), one
``sharing-guard worker`` with ``SHARING_GUARD_IDEMPOTENCY_WINDOW_S`` = ``--window-s``
decides the simulation, produced while it runs in chunks of 20,000 distinct transfers
(governance first), the next chunk once the worker is less than one chunk behind.

* **Flat memory:** about once a second (less often while a chunk is produced), the
  worker's RSS (``VmRSS``) and the decisions made (``sharing_guard_decisions_total``,
  summed over the run's worker processes, repeats included). RSS at the end over RSS after
  ``--mark`` (100,000) decided, in the same process: target at most 1.2.
* **Bounded restart:** with the backlog decided, SIGTERM and a new worker on the same data
  directory, after ``--restart-at`` (10,000) and after all transfers: seconds from process
  start to ``/readyz`` answering 200; target: the second within 2x the first. The new
  worker must decide 20 fresh transfers, and give the last transfer decided before the
  stop, produced again (same key and value, plus a ``bench.redelivery`` header), its first
  decision (outcome and reasons) marked ``guard.duplicate: 1``.

Prints a table (MISSED: a target missed; FAILED: a check failed) and writes
``benchmarks/out/guard_soak.json`` with the RSS curve. Exit status 0 when the run was made.
The run's topics are deleted at the end, and its data directory unless the run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))

from guard_harness import GuardProcess, fresh_topics, guard_env  # noqa: E402
from guard_kafka import Record, delete_run_topics, machine, new_producer, produce  # noqa: E402
from kafka import KafkaAdminClient, KafkaConsumer  # noqa: E402
from kafka.admin import ConfigResource, ConfigResourceType  # noqa: E402
from kafka.errors import KafkaError  # noqa: E402
from sharing_guard.client import route  # noqa: E402
from sharing_guard.codec import contract_registry  # noqa: E402
from sharing_guard.contract import TransferRequested  # noqa: E402
from sharing_guard.settings import Topics  # noqa: E402
from sharing_guard.simulation import iter_events  # noqa: E402

DEFAULT_OUT = HERE / "out" / "guard_soak.json"
RSS_TARGET, RESTART_TARGET = 1.2, 2.0
REDELIVERY = "bench.redelivery"
CHUNK, PROBES = 20_000, 20  # transfers per produce; fresh transfers after each restart


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MB (``VmRSS``), None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kb = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS:")), None)
    return round(int(kb) / 1024, 1) if kb else None


def set_retention(bootstrap: str, topics: Topics, retention_s: float) -> None:
    """``retention.ms`` on the transfers and order-requests topics, once the broker reports
    it (it applies a change a moment after acknowledging it): before any worker runs."""
    ms = str(int(retention_s * 1000))
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, name, {"retention.ms": ms})
        for name in (topics.transfers, topics.order_requests)
    ]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        for attempt in range(100):
            # kafka-python (3.x) checks each name against the topic's described configs
            # first; a topic created a moment ago may describe none yet.
            try:
                admin.alter_configs(resources)
                break
            except ValueError:
                if attempt == 99:
                    raise
                time.sleep(0.1)
        for _ in range(300):
            described = admin.describe_configs(resources)["topic"].values()
            if all(c.get("retention.ms", {}).get("value") == ms for c in described):
                return
            time.sleep(0.1)
        raise RuntimeError("the broker did not apply retention.ms in 30 s")
    finally:
        admin.close()


class Soak:
    """One worker at a time on the run's topics and data directory, fed and sampled.

    A reader follows the decisions topic throughout and keeps the records (value and
    headers) of the watched event ids only: the transfers checked around the restarts.
    """

    def __init__(self, bootstrap: str, topics: Topics, env: dict[str, str], args: Any) -> None:
        self.topics, self.env, self.args = topics, env, args
        self.log = Path(env["SHARING_GUARD_DATA_DIR"]).parent / "worker.log"
        self.events = iter_events(10**9, args.seed)  # the simulation, encoded as workload()
        self.registry = contract_registry()
        self.fields = Topics(**{name: name for name in Topics.model_fields})
        self.recent: dict[str, None] = {}  # recent transfer ids: tells redeliveries apart
        self.transfers = 0  # distinct transfers taken
        self.last: tuple[str, Record] = ("", ("transfers", b"", b""))
        self.producer = new_producer(bootstrap)
        self.reader = KafkaConsumer(
            topics.decisions,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            check_crcs=False,  # pure-Python CRC checks would take CPU from the worker
        )
        self.watch: dict[str, list[tuple[bytes, dict[str, bytes]]]] = {}
        self.proc = GuardProcess(env, self.log)
        self.workers = self.base = 0  # processes started; decisions of the earlier ones
        self.t0 = self.sampled_at = time.monotonic()
        self.samples: list[dict[str, Any]] = []
        self.progress = (0, time.monotonic())  # the decided count and when it last grew

    def start(self) -> float:
        """Start a worker; seconds from process start to ``/readyz`` answering 200."""
        self.proc = GuardProcess(self.env, self.log)
        started = time.monotonic()
        process = self.proc.start().process
        assert process is not None
        self.workers += 1
        while not self.proc.ready_now():
            if process.poll() is not None:
                raise RuntimeError(f"worker exited; log {self.log}")
            if time.monotonic() - started > self.args.timeout:
                raise RuntimeError(f"worker not ready; log {self.log}")
            time.sleep(0.05)
        return round(time.monotonic() - started, 3)

    def sample(self) -> dict[str, Any] | None:
        """Decisions so far and the worker's RSS, appended to the curve (None: no scrape)."""
        process = self.proc.process
        assert process is not None
        if process.poll() is not None:
            raise RuntimeError(f"worker exited; log {self.log}")
        self.sampled_at = now = time.monotonic()
        try:
            decided = self.base + int(self.proc.decisions_made())
        except httpx.HTTPError:  # the next tick tries again
            return None
        point = {
            "decided": decided,
            "rss_mb": rss_mb(process.pid),
            "seconds": round(now - self.t0, 1),
            "worker": self.workers,
        }
        self.samples.append(point)
        if decided > self.progress[0]:
            self.progress = (decided, now)
        return point

    def tick(self) -> int:
        """Read decisions until a second has passed since the last sample; sample."""
        decode = self.registry.decode
        while (left := self.sampled_at + 1 - time.monotonic()) > 0:
            for records in self.reader.poll(timeout_ms=max(1, int(left * 1000))).values():
                for r in records:
                    headers = dict(r.headers or [])
                    raw = headers.get("guard.event_id")
                    seen = self.watch.get(raw.decode() if raw else decode(r.value).event_id)
                    if seen is not None:
                        seen.append((r.value, headers))
        point = self.sample()
        return int(point["decided"]) if point else self.progress[0]

    def send(self, n: int, watch: bool = False) -> list[str]:
        """Produce the next ``n`` new transfers, governance first; their ids. The last one is
        watched (with ``watch``, all are)."""
        governance: list[Record] = []
        transfers: list[Record] = []
        new: list[str] = []
        while len(new) < n:
            event = next(self.events)
            topic, key = route(event, self.fields)
            record = (topic, key.encode(), self.registry.encode(event))
            if not isinstance(event, TransferRequested):
                governance.append(record)
                continue
            transfers.append(record)
            if event.event_id not in self.recent:
                new.append(event.event_id)
                self.last = (event.event_id, record)
                self.recent[event.event_id] = None
                if len(self.recent) > 4096:
                    del self.recent[next(iter(self.recent))]
        self.transfers += len(new)
        for event_id in new if watch else new[-1:]:
            self.watch.setdefault(event_id, [])
        produce(self.producer, self.topics, governance + transfers, None)
        return new

    def feed(self, target: int) -> dict[str, Any]:
        """Stay less than two chunks ahead until ``target`` are decided; the last sample."""
        decided = self.tick()
        while decided < target:
            taken = self.transfers
            if taken < target and taken - decided < CHUNK:
                self.send(min(CHUNK, target - taken))
            decided = self.tick()
            if time.monotonic() - self.progress[1] > self.args.timeout:
                raise RuntimeError(f"no decision for {self.args.timeout:.0f}s")
        return self.samples[-1]  # decided >= target: counts only grow within a process

    def wait(self, event_ids: Sequence[str], again: bool = False) -> bool:
        """Tick until each id has a decision (``again``: one of its redelivery); in time?"""
        deadline = time.monotonic() + self.args.timeout
        while time.monotonic() < deadline:
            if all(any(REDELIVERY in h or not again for _, h in self.watch[e]) for e in event_ids):
                return True
            self.tick()
        return False

    def restart(self) -> dict[str, Any]:
        """Restart the worker, time it, and check it decides and repeats a redelivery."""
        event_id, (topic, key, value) = self.last
        decided_before = self.wait([event_id])
        self.tick()
        self.base = after = self.progress[0]
        stopping = time.monotonic()
        self.proc.stop()
        stop_s = round(time.monotonic() - stopping, 3)
        ready_s = self.start()
        restored = self.proc.counter("sharing_guard_restored_records_total")
        data = Path(self.env["SHARING_GUARD_DATA_DIR"])
        store_mb = sum(f.stat().st_size for f in data.rglob("*") if f.is_file()) / 2**20
        headers = [(REDELIVERY, b"1")]
        self.producer.send(getattr(self.topics, topic), key=key, value=value, headers=headers)
        probes = self.send(PROBES, watch=True)  # flushes the redelivery too
        return {
            "after_decided": after,
            "stop_s": stop_s,
            "ready_s": ready_s,
            "restored_records": restored,
            "store_mb": round(store_mb, 1),
            "probes": len(probes),
            "probes_decided": self.wait(probes),
            "redelivery": self.redelivery(event_id, decided_before),
        }

    def redelivery(self, event_id: str, decided_before: bool) -> dict[str, Any]:
        """Wait for the redelivery's decision; compare it with the transfer's first one."""
        decided = decided_before and self.wait([event_id], again=True)
        seen = self.watch[event_id]
        again = next((s for s in seen if REDELIVERY in s[1]), None)
        if not decided or again is None:
            why = "redelivery not decided" if decided_before else "not decided before the stop"
            return {"event_id": event_id, "ok": False, "verdict": f"FAILED: {why}"}
        first, repeat = (self.registry.decode(value) for value in (seen[0][0], again[0]))
        same = (first.outcome, first.reasons) == (repeat.outcome, repeat.reasons)
        marked = again[1].get("guard.duplicate") == b"1"
        return {
            "event_id": event_id,
            "ok": same and marked,
            "verdict": ("same decision" if same else "FAILED: a fresh decision")
            + (", marked duplicate" if marked else ", FAILED: not marked duplicate"),
            "first": first.model_dump(mode="json"),
            "repeat": repeat.model_dump(mode="json"),
        }

    def close(self) -> None:
        self.proc.stop()
        self.reader.close()
        self.producer.close()


def verdict(ratio: float | None, target: float) -> dict[str, Any]:
    met = ratio is not None and ratio <= target
    return {"ratio": ratio and round(ratio, 3), "met": met, "target": target}


def run(bootstrap: str, args: Any) -> dict[str, Any]:
    """The whole soak on fresh topics; the figures and the checks' results."""
    topics = fresh_topics(bootstrap)
    suffix = topics.transfers.rsplit(".", 1)[-1]
    app_id = f"soak-{suffix}"
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        set_retention(bootstrap, topics, args.retention_s)
        env = guard_env(bootstrap, topics, app_id, tmp / "data")
        env["SHARING_GUARD_IDEMPOTENCY_WINDOW_S"] = f"{args.window_s:g}"
        soak = Soak(bootstrap, topics, env, args)
        try:
            cold_s = soak.start()
            soak.feed(args.restart_at)
            restarts = [soak.restart()]
            end = soak.feed(args.transfers)
            restarts.append(soak.restart())
        finally:
            soak.close()
    except BaseException:
        print(f"run failed; worker log and data kept in {tmp}", file=sys.stderr)
        raise
    finally:
        delete_run_topics(bootstrap, suffix, app_id)
    shutil.rmtree(tmp, ignore_errors=True)
    at_mark = next(s for s in soak.samples if s["decided"] >= args.mark)
    rss = end["rss_mb"] / at_mark["rss_mb"] if at_mark["rss_mb"] and end["rss_mb"] else None
    return {
        "transfers": soak.transfers,
        "decisions": soak.samples[-1]["decided"],
        "seconds": soak.samples[-1]["seconds"],
        "rss": {"at_mark": at_mark, "at_end": end, **verdict(rss, RSS_TARGET)},
        "cold_start_ready_s": cold_s,
        "restarts": restarts,
        "restart": verdict(restarts[1]["ready_s"] / restarts[0]["ready_s"], RESTART_TARGET),
        "samples": soak.samples,
    }


def table(result: dict[str, Any], args: Any, host: dict[str, Any], command: str) -> str:
    """The figures as a small table; a missed target or a failed check says so."""
    rss, restart = result["rss"], result["restart"]
    first, end = rss["at_mark"], rss["at_end"]

    def target(figure: dict[str, Any]) -> str:
        return f"<= {figure['target']:g}  {'met' if figure['met'] else 'MISSED'}"

    rows = [
        (f"RSS after the first {args.mark:,} decided", f"{first['rss_mb']} MB", ""),
        (f"RSS at the end ({end['decided']:,} decided)", f"{end['rss_mb']} MB", ""),
        ("RSS end / first", rss["ratio"], target(rss)),
        ("ready after the cold start", f"{result['cold_start_ready_s']} s", ""),
    ]
    for r in result["restarts"]:
        red, probes = r["redelivery"], "decided" if r["probes_decided"] else "FAILED"
        stop = f"(SIGTERM to exit: {r['stop_s']} s)"
        rows += [
            (f"ready after the restart at {r['after_decided']:,}", f"{r['ready_s']} s", stop),
            ("  changelog records read back", f"{r['restored_records']:.0f}", ""),
            ("  local store on disk", f"{r['store_mb']} MB", ""),
            (f"  then {r['probes']} fresh transfers", probes, ""),
            (f"  then redelivered {red['event_id']}", "", red["verdict"]),
        ]
    rows.append(("restart ratio (second / first)", restart["ratio"], target(restart)))
    head = (
        f"guard soak: {result['transfers']:,} transfers, {result['decisions']:,} decisions in "
        f"{result['seconds']:.0f} s, window {args.window_s:g} s, retention {args.retention_s:g} s"
    )
    body = [f"  {name:<42} {value!s:>9}  {note}".rstrip() for name, value, note in rows]
    host_line = (
        f"machine: {host['cpu_model']}, {host['logical_cpus']} CPUs, {host['memory_total']}, "
        f"Python {host['python']}, git {host['git']}"
    )
    return "\n".join([head, *body, host_line, f"command: {command}"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transfers", type=int, default=500_000)
    parser.add_argument("--mark", type=int, default=100_000, help="first RSS figure here")
    parser.add_argument("--restart-at", type=int, default=10_000)
    parser.add_argument("--window-s", type=float, default=90.0, help="idempotency window")
    parser.add_argument("--retention-s", type=float, default=60.0, help="transfers retention")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="60,000 transfers, mark 20,000")
    parser.add_argument("--timeout", type=float, default=600.0, help="longest wait, seconds")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.transfers, args.mark = 60_000, 20_000
    if not 0 < args.restart_at < args.mark < args.transfers:
        parser.error("need 0 < --restart-at < --mark < --transfers")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    command = shlex.join([sys.executable, sys.argv[0], *(sys.argv[1:] if argv is None else argv)])
    host = machine()
    try:
        result = run(bootstrap, args)
    except (RuntimeError, OSError, KafkaError) as exc:
        raise SystemExit(f"guard soak could not run: {exc}") from exc
    print(table(result, args, host, command), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    arguments = {**vars(args), "out": str(args.out)}
    record = {"arguments": arguments, "command": command, "machine": host, **result}
    args.out.write_text(json.dumps(record, indent=1))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
