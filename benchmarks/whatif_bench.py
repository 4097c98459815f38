"""What-if over history against replay of the same events, in the same run.

    .venv/bin/python benchmarks/whatif_bench.py            # 1,000,000 events (make bench-whatif)
    .venv/bin/python benchmarks/whatif_bench.py --quick    # 20,000 events, one run each

It streams ``--events`` simulated events (:mod:`sharing_guard.simulation`, seed ``--seed``)
into a JSON Lines file, and the same events again with each transfer carrying the decision
the bundled policy made for it, ``"recorded"`` last, as ``audit-sink history`` writes it.
Then it times, as CLI subprocesses (process start included), interleaved ``--repeat`` times:

* ``sharing-guard replay EVENTS > /dev/null``: the baseline;
* ``sharing-guard what-if --policy CANDIDATE EVENTS``: every transfer decided under the
  baseline and the candidate (child age 16, DE added to the jurisdictions), compared and
  grouped, on the very file replay reads;
* ``sharing-guard what-if --policy CANDIDATE HISTORY``: the same with the recorded
  decisions as the old side (the pipeline's input).

Events per second are the file's events over the median run; the ratio is what-if's over
replay's, on the same file, goal >= 0.5. Both what-if reports must agree on every change and
exit 1 (the candidate changes decisions); replay must exit 0. Figures, runs, the machine and
the load go to ``benchmarks/out/whatif.json`` (``whatif-quick.json`` for ``--quick``).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sharing_guard.contract import TransferRequested
from sharing_guard.core.ledger import GovernanceState, step
from sharing_guard.policy_file import load_policy
from sharing_guard.simulation import iter_events

HERE = Path(__file__).resolve().parent
GOAL = 0.5


@dataclass
class Figure:
    """One timed command: its wall and CPU time per run."""

    label: str
    events: int
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def per_second(self) -> float:
        return self.events / self.median

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "events": self.events,
            "wall_s": [round(s, 3) for s in self.wall],
            "cpu_s": [round(s, 3) for s in self.cpu],
            "median_s": round(self.median, 3),
            "events_per_s": round(self.per_second, 1),
            "best_events_per_s": round(self.events / min(self.wall), 1),
            "cpu_share": round(sum(self.cpu) / sum(self.wall), 3),
        }


def _cli() -> str:
    script = Path(sys.executable).with_name("sharing-guard")
    if not script.exists():
        raise SystemExit(f"{script} not found: run `make setup` first")
    return str(script)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(figure: Figure, argv: list[str], expect: int, report: Path | None = None) -> Any:
    """Run one command, timed; replay's decisions go to /dev/null (as ``> /dev/null``),
    what-if's report (a few kilobytes) to ``report``, parsed after the clock stops."""
    with report.open("wb") if report else open(os.devnull, "wb") as sink:
        wall, cpu = time.perf_counter(), _children_cpu()
        done = subprocess.run(argv, stdout=sink, stderr=subprocess.PIPE, check=False)
        figure.wall.append(time.perf_counter() - wall)
        figure.cpu.append(_children_cpu() - cpu)
    if done.returncode != expect:
        raise RuntimeError(
            f"{' '.join(argv[1:3])} exited {done.returncode}, not {expect}: {done.stderr[:500]!r}"
        )
    return None if report is None else json.loads(report.read_bytes())


def write_inputs(count: int, seed: int, events: Path, history: Path) -> dict[str, int]:
    """The simulated events, and the same with each transfer's recorded decision (untimed)."""
    policy = load_policy()
    state = GovernanceState()
    transfers = 0
    with events.open("wb") as plain, history.open("wb") as recorded:
        for event in iter_events(count, seed):
            line = event.model_dump_json().encode()
            plain.write(line + b"\n")
            result = step(state, event, policy)
            state = result.state
            if isinstance(event, TransferRequested) and result.decision is not None:
                transfers += 1
                decision = result.decision
                extra = json.dumps(
                    {
                        "outcome": decision.outcome.value,
                        "reasons": [
                            {"code": r.code.value, "clause": r.clause.value}
                            for r in decision.reasons
                        ],
                        "policy_version": decision.policy_version,
                        "order_ref": decision.order_ref,
                    },
                    separators=(",", ":"),
                ).encode()
                line = line[:-1] + b',"recorded":' + extra + b"}"
            recorded.write(line + b"\n")
    return {"events": count, "transfer_lines": transfers, "bytes": events.stat().st_size}


def candidate_policy(path: Path) -> Path:
    text = (resources.files("sharing_guard") / "policy.toml").read_text(encoding="utf-8")
    text = text.replace("child_age_limit = 13", "child_age_limit = 16")
    text = text.replace(
        'appropriate_jurisdictions = ["CH"]', 'appropriate_jurisdictions = ["CH", "DE"]'
    )
    path.write_text(text, encoding="utf-8")
    return path


def machine() -> dict[str, Any]:
    model = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20,000 events, one run each")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.events, args.repeat = 20_000, 1
    out = args.out or HERE / "out" / ("whatif-quick.json" if args.quick else "whatif.json")
    cli = _cli()
    results: dict[str, Any] = {"machine": machine(), "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="sg-whatif-") as tmp:
        events, history = Path(tmp) / "events.jsonl", Path(tmp) / "history.jsonl"
        started = time.perf_counter()
        results["input"] = write_inputs(args.events, args.seed, events, history)
        print(
            f"{args.events:,} events written in {time.perf_counter() - started:.0f} s "
            f"({results['input']['bytes'] / 2**20:.0f} MiB); {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        candidate = candidate_policy(Path(tmp) / "candidate.toml")
        report = Path(tmp) / "report.json"
        replay = Figure("sharing-guard replay EVENTS", args.events)
        plain = Figure("sharing-guard what-if EVENTS", args.events)
        recorded = Figure("sharing-guard what-if HISTORY (recorded)", args.events)
        what_if = [cli, "what-if", "--policy", str(candidate), "--format", "json"]
        reports: dict[str, Any] = {}
        for n in range(args.repeat):
            _timed(replay, [cli, "replay", str(events)], expect=0)
            reports["plain"] = _timed(plain, [*what_if, str(events)], 1, report)
            reports["recorded"] = _timed(recorded, [*what_if, str(history)], 1, report)
            print(
                f"run {n + 1}/{args.repeat}: replay {replay.wall[-1]:.1f} s, what-if "
                f"{plain.wall[-1]:.1f} s, what-if with recorded {recorded.wall[-1]:.1f} s",
                flush=True,
            )
    if reports["plain"]["changes"] != [
        {**g, "recorded": 0, "recorded_policy_versions": {}} for g in reports["recorded"]["changes"]
    ]:
        raise RuntimeError("what-if over the recorded history found other changes")
    if reports["recorded"]["totals"]["not_reproduced"]:
        raise RuntimeError("recorded decisions the baseline does not reproduce")
    ratio = plain.per_second / replay.per_second
    ratio_recorded = recorded.per_second / replay.per_second
    results.update(
        {
            "figures": [f.to_json() for f in (replay, plain, recorded)],
            "ratio": round(ratio, 3),
            "ratio_recorded": round(ratio_recorded, 3),
            "goal": GOAL,
            "meets": ratio >= GOAL,
            "totals": reports["plain"]["totals"],
            "load_average_end": os.getloadavg(),
        }
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n  {'command':<44}{'median s':>10}{'events/s':>12}{'best/s':>12}{'cpu':>6}")
    for figure in (replay, plain, recorded):
        row = figure.to_json()
        print(
            f"  {figure.label:<44}{row['median_s']:>10.2f}{row['events_per_s']:>12,.0f}"
            f"{row['best_events_per_s']:>12,.0f}{row['cpu_share']:>6.2f}"
        )
    totals = reports["plain"]["totals"]
    print(
        f"\n  what-if re-decided {totals['transfers']:,} transfers: {totals['changed']:,} change"
        f"\n  what-if / replay, same file: {ratio:.3f} (goal >= {GOAL}: "
        f"{'meets' if ratio >= GOAL else 'BELOW'}); with recorded decisions: {ratio_recorded:.3f}"
        f"\n  load average at the end {os.getloadavg()[0]:.2f}; written to {out}"
    )
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
