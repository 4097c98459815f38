"""Scale-out of the guard on the real broker: 1 worker, then 2, on the same backlog.

    .venv/bin/python benchmarks/guard_scaleout.py                  # 20,000 transfers, 2 rounds
    .venv/bin/python benchmarks/guard_scaleout.py --quick          # 3,000 transfers, 1 round
    .venv/bin/python benchmarks/guard_scaleout.py --workers 1,2,3 --partitions 12

Needs the broker of ``scripts/kafka.sh start`` (``KAFKA_BOOTSTRAP_SERVERS``, default
``127.0.0.1:19092``). Each run gets fresh private topics with ``--partitions`` partitions
for the account-keyed topics, the governance and the backlog of a simulation produced
before any worker starts (:func:`guard_kafka.workload`), then ``W`` guard worker processes
(``sharing-guard worker``, configured by ``SHARING_GUARD_*`` only), started together and
waited for until every one is ready (the group has settled).

Measured: **decisions/s** over the window from the first to the last first-decision seen
on ``sharing.decisions`` (start-up excluded), and checked: **every transfer decided
exactly once** (one effective decision per ``event_id``; repeats, if any, identical and
marked ``guard.duplicate: 1``; each worker decided some). The runs with 1 and 2 workers
alternate; the ratio of medians (2 workers over 1) is the scale-out factor. Results go to
``benchmarks/out/guard_scaleout.json``. A worker per core is the ceiling: on a 2-core
machine two workers share the cores with the broker and this process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))

from guard_harness import DecisionReader, GuardProcess, fresh_topics, guard_env  # noqa: E402
from guard_kafka import delete_run_topics, machine, new_producer, produce, workload  # noqa: E402
from sharing_guard.codec import contract_registry  # noqa: E402

DEFAULT_OUT = HERE / "out" / "guard_scaleout.json"


def one_run(bootstrap: str, workers: int, partitions: int, load: Any, timeout_s: float) -> dict:
    """Decide the backlog with ``workers`` processes; throughput and the exactly-once check."""
    topics = fresh_topics(bootstrap, partitions=partitions)
    suffix = topics.transfers.rsplit(".", 1)[-1]
    app_id = f"scaleout-{suffix}"
    producer = new_producer(bootstrap)
    produce(producer, topics, load.governance, None)
    produce(producer, topics, load.backlog, None)
    producer.close()
    registry = contract_registry()
    wanted = {registry.decode(value).event_id for _, _, value in load.backlog}
    reader = DecisionReader(bootstrap, topics)
    tmp = tempfile.mkdtemp(prefix="scaleout-")
    # The worker logs stay in ``tmp`` when a run fails.
    env = guard_env(bootstrap, topics, app_id, Path(tmp) / "d0")
    env["SHARING_GUARD_ACCOUNT_PARTITIONS"] = str(partitions)
    procs = [
        GuardProcess(
            {**env, "SHARING_GUARD_DATA_DIR": str(Path(tmp) / f"d{i}")},
            Path(tmp) / f"w{i}.log",
        )
        for i in range(workers)
    ]
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.wait_ready(timeout_s=180)
        deadline = time.monotonic() + timeout_s
        seen_at: dict[str, float] = {}
        while not wanted <= seen_at.keys():
            if time.monotonic() > deadline:
                missing = len(wanted - seen_at.keys())
                for proc in procs:
                    proc.diagnose()  # the flow state goes into the kept log
                raise SystemExit(f"{missing} of {len(wanted)} transfers not decided; logs in {tmp}")
            reader.poll()
            now = time.monotonic()
            for event_id in reader.first.keys() - seen_at.keys():
                seen_at[event_id] = now
        per_worker = [proc.decisions_made() for proc in procs]
        read_back = [proc.counter("sharing_guard_read_back_total") for proc in procs]
    finally:
        for proc in procs:
            proc.stop()
        reader.close()
        delete_run_topics(bootstrap, suffix, app_id)
    shutil.rmtree(tmp, ignore_errors=True)
    times = [seen_at[e] for e in wanted]
    span = max(times) - min(times)
    by_id: dict[str, set[tuple[str, tuple[str, ...]]]] = {}
    marked: Counter[str] = Counter()
    for decision, headers in reader.all:
        if decision.event_id in wanted:
            by_id.setdefault(decision.event_id, set()).add(
                (decision.outcome.value, tuple(c.value for c in decision.codes))
            )
            marked[headers.get("guard.duplicate", b"0").decode()] += 1
    conflicting = sum(1 for outcomes in by_id.values() if len(outcomes) > 1)
    firsts = marked["0"]
    return {
        "workers": workers,
        "partitions": partitions,
        "transfers": len(wanted),
        "span_s": round(span, 3),
        "decisions_per_s": round((len(wanted) - 1) / span, 1) if span > 0 else None,
        "decisions_by_worker": per_worker,
        # Records Faust did not deliver, read back by the worker (holes, sweep, catch-up).
        "read_back_by_worker": read_back,
        # One effective decision each: every transfer decided, no two different answers.
        "exactly_once": conflicting == 0 and set(by_id) == wanted,
        "repeats_marked_duplicate": marked["1"],
        "conflicting_repeats": conflicting,
        # Above the transfer count: a transfer decided afresh twice (identically) around
        # a rebalance, not recognised as a repeat.
        "unmarked_decisions": firsts,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--transfers", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--repeat", type=int, default=2, help="rounds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="3,000 transfers, one round")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.quick:
        args.transfers, args.repeat = 3_000, 1
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    counts = [int(w) for w in args.workers.split(",")]
    load = workload(args.transfers, 0, args.seed)
    runs = []
    for round_ in range(args.repeat):
        order = counts if round_ % 2 == 0 else list(reversed(counts))
        for workers in order:
            result = one_run(bootstrap, workers, args.partitions, load, args.timeout)
            runs.append(result)
            print(
                f"round {round_ + 1}: {workers} worker(s): {result['decisions_per_s']} "
                f"decisions/s, by worker {result['decisions_by_worker']}, "
                f"read back {result['read_back_by_worker']}, "
                f"exactly once: {result['exactly_once']}",
                flush=True,
            )
    summary = {}
    for workers in counts:
        rates = [r["decisions_per_s"] for r in runs if r["workers"] == workers]
        summary[str(workers)] = {"median_decisions_per_s": statistics.median(rates), "all": rates}
    base = summary[str(counts[0])]["median_decisions_per_s"]
    for workers in counts:
        entry = summary[str(workers)]
        entry["ratio_to_first"] = round(entry["median_decisions_per_s"] / base, 3)
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "arguments": {**vars(args), "out": str(args.out)},
                "machine": machine(),
                "runs": runs,
                "summary": summary,
            },
            indent=1,
        )
    )
    return 0 if all(r["exactly_once"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
