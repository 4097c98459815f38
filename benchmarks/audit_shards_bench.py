"""How fast two ``audit-sink ingest`` processes fill a sharded trail, against one single log.

    .venv/bin/python benchmarks/audit_shards_bench.py                   # 30,000 records
    .venv/bin/python benchmarks/audit_shards_bench.py --records 20000 --repeat 2

On the real broker and PostgreSQL (``SHARING_GUARD_TEST_PG_DSN``, else the DSN
``scripts/postgres.sh dsn`` prints): ``--records`` realistic audit records
(:func:`audit_sink.samples.sample_records`, Avro-encoded as the guard publishes its
decisions, keyed by event id) are produced once to each of three private topics, of 1, 2
and 3 partitions. Then, each run on fresh schemas installed from ``audit-sink pg-schema``'s
SQL (``--shards k`` for the sharded runs) and in a fresh consumer group:

* **baseline**: ONE ``audit-sink ingest --stop-at-end`` in single mode (one log), reading
  the three-partition topic;
* **k shards** (k = 1, 2, 3): TWO ``audit-sink ingest --stop-at-end`` processes in one
  group, ``AUDIT_SINK_SHARDING=partition``, reading the k-partition topic (one shard per
  partition; with k = 1 one of the two has nothing to do).

Timed: from just before the first process starts until every process has exited (the
figure reported), and until the last process that stored anything exited. Startup, the
group's join and rebalances (a second member joining, a member leaving when its partitions
are drained) are in it: that is what a backfill by two sinks costs. Each run is verified
afterwards (``audit-sink verify``, which must say OK with every record). Reported per run:
entries/s and its ratio to the baseline of the same round, each process's CPU seconds (its
own and its prepare helper's, from ``wait4``), how many records each process ingested, and
how busy the machine's CPUs were meanwhile (``/proc/stat``, every process: the PostgreSQL
server and the broker included). Sinks use the default settings (2,000 records per batch,
a checkpoint per batch, the prepare helper) and a 6,000 ms group session timeout (heartbeats
every 2 s: a member joining or leaving is noticed sooner). ``--repeat`` rounds are run, each
baseline then 1, 2, 3 shards; the machine (``nproc``, CPU model, load average at start and
end) and every run go to ``benchmarks/out/audit-shards.json``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit_sink.samples import sample_records
from audit_sink.signing import create_signing_key
from sharing_guard.codec import contract_registry

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
DEFAULT_PG_DSN = "postgresql://sharing_guard:sharing_guard@127.0.0.1:5432/sharing_guard_test"
SHARDS = (1, 2, 3)
SINKS = 2
_INGESTED = re.compile(r"ingested (\d+) records in (\d+) batches")
_ASSIGNED = re.compile(r"assigned partitions \[([0-9, ]*)\]")


def pg_dsn() -> str:
    """``SHARING_GUARD_TEST_PG_DSN``, else what ``scripts/postgres.sh dsn`` prints."""
    dsn = os.environ.get("SHARING_GUARD_TEST_PG_DSN")
    if dsn:
        return dsn
    try:
        printed = subprocess.run(
            [str(ROOT / "scripts" / "postgres.sh"), "dsn"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        printed = ""
    return printed or DEFAULT_PG_DSN


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = platform.processor()
    for text in Path("/proc/cpuinfo").read_text().splitlines():
        if text.startswith("model name"):
            model = text.split(":", 1)[1].strip()
            break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": Path("/proc/loadavg").read_text().strip(),
    }


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot (``/proc/stat``)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return total - idle, total


def produce(bootstrap: str, topic: str, values: Sequence[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024
    )
    try:
        for key, value in values:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=10)


def create_topic(admin: Any, partitions: int) -> str:
    from kafka.admin import NewTopic

    name = f"bench.audit-shards.{uuid.uuid4().hex[:10]}"
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    for _ in range(100):
        described = admin.describe_topics([name])
        if described and len(described[0].get("partitions") or []) == partitions:
            return name
        time.sleep(0.1)
    raise SystemExit(f"topic {name} did not get its {partitions} partitions")


@dataclass
class Sink:
    """One ``audit-sink ingest`` process of a run."""

    process: subprocess.Popen[bytes]
    log: Path
    exited_after: float = 0.0
    cpu_s: float = 0.0
    status: int | None = None

    def ingested(self) -> int:
        found = _INGESTED.findall(self.log.read_text(errors="replace"))
        return int(found[-1][0]) if found else 0

    def assignments(self) -> list[list[int]]:
        text = self.log.read_text(errors="replace")
        return [
            sorted(int(p) for p in m.group(1).split(",") if p.strip())
            for m in _ASSIGNED.finditer(text)
        ]


class Bench:
    """Shared state of one invocation: keys, DSN, broker, the work directory."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.dsn = pg_dsn()
        self.bootstrap = args.bootstrap
        self.index_key = base64.b64encode(os.urandom(32)).decode("ascii")

    def env(self, name: str, topic: str, sharded: bool) -> dict[str, str]:
        """A fresh origin, key, schemas and group for one run."""
        origin = f"bench.invalid/audit-shards/{name}"
        (self.work / name).mkdir(parents=True)
        key_file = self.work / name / "signing.key"
        signer = create_signing_key(key_file, origin)
        env = {key: value for key, value in os.environ.items() if not key.startswith("AUDIT_SINK_")}
        env.update(
            {
                "AUDIT_SINK_ORIGIN": origin,
                "AUDIT_SINK_DATA_DIR": str(self.work / name),
                "AUDIT_SINK_SIGNING_KEY_FILE": str(key_file),
                "AUDIT_SINK_INDEX_KEY": self.index_key,
                "AUDIT_SINK_VKEY": signer.verifier().vkey,
                "AUDIT_SINK_BACKEND": "postgres",
                "AUDIT_SINK_POSTGRES__DSN": self.dsn,
                "AUDIT_SINK_POSTGRES__SCHEMA_NAME": f"bench_{name}",
                "AUDIT_SINK_POSTGRES__KEYS_SCHEMA": f"bench_{name}_keys",
                "AUDIT_SINK_AUDIT_TOPIC": topic,
                "AUDIT_SINK_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
                "AUDIT_SINK_KAFKA__GROUP_ID": f"bench-{name}",
                "AUDIT_SINK_KAFKA__SESSION_TIMEOUT_MS": "6000",
                "AUDIT_SINK_METRICS_PORT": "0",
                "AUDIT_SINK_SHARDING": "partition" if sharded else "single",
            }
        )
        return env

    def audit_sink(self, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "audit_sink", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def install(self, env: dict[str, str], shards: int) -> list[str]:
        """Install the schemas from ``audit-sink pg-schema``'s SQL; return their names."""
        import psycopg

        argv = ["pg-schema"] + (["--shards", str(shards)] if shards else [])
        printed = self.audit_sink(env, *argv)
        if printed.returncode != 0:
            raise SystemExit(f"pg-schema failed: {printed.stderr}")
        base = env["AUDIT_SINK_POSTGRES__SCHEMA_NAME"]
        schemas = [base, env["AUDIT_SINK_POSTGRES__KEYS_SCHEMA"]]
        if shards:
            schemas += [f"{base}_shard_{p}" for p in range(shards)] + [f"{base}_heads"]
        with psycopg.connect(self.dsn, autocommit=True) as db:
            db.execute(printed.stdout)
        return schemas

    def drop(self, schemas: Sequence[str]) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as db:
            for schema in schemas:
                db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def run(self, label: str, topic: str, shards: int, sinks: int) -> dict[str, Any]:
        """One timed run: ``sinks`` processes, ``shards`` shards (0: single mode)."""
        name = f"{label.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        env = self.env(name, topic, sharded=shards > 0)
        schemas = self.install(env, shards)
        try:
            started: list[Sink] = []
            busy0, total0 = cpu_ticks()
            t0 = time.perf_counter()
            for n in range(sinks):
                log = self.work / name / f"sink-{n}.log"
                with log.open("wb") as handle:
                    process = subprocess.Popen(
                        [sys.executable, "-m", "audit_sink", "ingest", "--stop-at-end"],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=handle,
                        stderr=handle,
                    )
                started.append(Sink(process, log))
            by_pid = {sink.process.pid: sink for sink in started}
            while any(sink.status is None for sink in started):
                pid, status, usage = os.wait4(-1, 0)
                sink = by_pid.get(pid)
                if sink is None:
                    continue
                sink.exited_after = time.perf_counter() - t0
                sink.status = os.waitstatus_to_exitcode(status)
                sink.process.returncode = sink.status
                sink.cpu_s = usage.ru_utime + usage.ru_stime
            wall = time.perf_counter() - t0
            busy1, total1 = cpu_ticks()
            for sink in started:
                if sink.status != 0:
                    tail = sink.log.read_text(errors="replace")[-3000:]
                    raise SystemExit(f"{label}: a sink exited with {sink.status}:\n{tail}")
            verified = self.audit_sink(env, "verify")
            records = self.args.records
            ok = verified.returncode == 0 and verified.stdout.startswith(
                f"OK: {records} entries intact"
            )
            if not ok:
                raise SystemExit(f"{label}: verify failed:\n{verified.stdout}{verified.stderr}")
            writing = [s.exited_after for s in started if s.ingested() > 0]
            drained = max(writing) if writing else wall
            return {
                "label": label,
                "shards": shards,
                "sinks": sinks,
                "wall_s": round(wall, 3),
                "per_s": round(records / wall),
                "until_last_writer_exited_s": round(drained, 3),
                "per_s_until_last_writer": round(records / drained),
                "machine_cpu_busy": round((busy1 - busy0) / max(1, total1 - total0), 3),
                "processes": [
                    {
                        "cpu_s": round(s.cpu_s, 2),
                        "exited_after_s": round(s.exited_after, 2),
                        "ingested": s.ingested(),
                        "assignments": s.assignments(),
                    }
                    for s in started
                ],
                "verified": verified.stdout.splitlines()[0],
            }
        finally:
            self.drop(schemas)


def show(run: dict[str, Any], baseline: float | None) -> None:
    ratio = "" if baseline is None else f"  x{run['per_s'] / baseline:.2f} of the baseline"
    parts = ", ".join(
        f"{p['ingested']:,} rec {p['cpu_s']:.1f} s CPU exit {p['exited_after_s']:.1f} s"
        for p in run["processes"]
    )
    print(
        f"  {run['label']:<9} {run['per_s']:>7,}/s ({run['wall_s']:.1f} s; to last writer "
        f"{run['per_s_until_last_writer']:,}/s){ratio}; CPUs busy "
        f"{run['machine_cpu_busy']:.0%}; [{parts}]"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--records", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=1, help="rounds (baseline, 1, 2, 3)")
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
        help="Kafka bootstrap servers",
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="keep the sinks' logs and keys under DIR"
    )
    args = parser.parse_args(argv)
    from kafka.admin import KafkaAdminClient

    results: dict[str, Any] = {
        "machine": machine(),
        "records": args.records,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rounds": [],
    }
    print(
        f"audit sink shards benchmark: {args.records:,} records, {os.cpu_count()} CPUs, "
        f"load {results['machine']['loadavg_start']}"
    )
    registry = contract_registry()
    values = [(r.event_id.encode(), registry.encode(r)) for r in sample_records(args.records)]
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    topics = {k: create_topic(admin, k) for k in SHARDS}
    try:
        for topic in topics.values():
            produce(args.bootstrap, topic, values)
        with tempfile.TemporaryDirectory(prefix="audit-shards-bench-") as tmp:
            bench = Bench(args, args.keep or Path(tmp))
            for number in range(args.repeat):
                print(f"round {number + 1}")
                base = bench.run("single", topics[max(SHARDS)], 0, 1)
                show(base, None)
                runs = [base]
                for k in SHARDS:
                    run = bench.run(f"{k}-shard", topics[k], k, SINKS)
                    run["ratio_to_single"] = round(run["per_s"] / base["per_s"], 3)
                    show(run, base["per_s"])
                    runs.append(run)
                results["rounds"].append(runs)
    finally:
        admin.delete_topics(list(topics.values()))
        admin.close()
    summary = {}
    for position, label in enumerate(["single", *(f"{k}-shard" for k in SHARDS)]):
        rates = [r[position]["per_s"] for r in results["rounds"]]
        ratios = [r[position].get("ratio_to_single", 1.0) for r in results["rounds"]]
        summary[label] = {
            "per_s_median": round(statistics.median(rates)),
            "ratio_median": round(statistics.median(ratios), 3),
        }
    results["summary"] = summary
    results["loadavg_end"] = Path("/proc/loadavg").read_text().strip()
    print(f"load at the end {results['loadavg_end']}")
    OUT.mkdir(exist_ok=True)
    out = OUT / "audit-shards.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
