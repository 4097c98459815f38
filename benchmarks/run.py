"""The policy-engine benchmark, with its baselines measured in the same run.

    .venv/bin/python benchmarks/run.py                 # 100,000 simulated events (make bench)
    .venv/bin/python benchmarks/run.py --quick         # a few seconds, to check it runs

It generates a deterministic, production-like event mix (:mod:`sharing_guard.simulation`)
and reports decisions per second of:

* ``engine.evaluate``: the pure decision function over facts gathered beforehand;
* ``ledger.step``: the whole engine over parsed events (state updates, idempotency, quota);
* ``replay`` in-process: JSON Lines bytes in, decision JSON out, through
  :func:`sharing_guard.replay.replay`;
* ``sharing-guard replay FILE > /dev/null`` as a subprocess, process start included;
* cedarpy on a Cedar encoding of the processor and Virtual-Drive rules
  (``benchmarks/cedar/policy.cedar``), per call and batched, on the transfers that
  encoding covers, next to ``engine.evaluate`` on the same transfers, with a count of how
  many Cedar decisions agree with the engine on those two rule families.

Each figure is timed ``--repeat`` times, interleaved with the figures it is compared with,
and reported over the median run and the fastest one, with its CPU time over wall time
(every measured loop is single-threaded; below 1 it had to share its core). ``--pin``
pins the process to one CPU. A table goes to stdout and every run's figures to
``benchmarks/out/engine.json``. ``benchmarks/README.md`` says what each figure means.
"""

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import cedarpy
from immutables import Map
from sharing_guard.contract import (
    DataCategory,
    Decision,
    Event,
    Outcome,
    ReasonCode,
    TransferRequested,
)
from sharing_guard.core.engine import Facts, evaluate, gather_facts
from sharing_guard.core.ledger import GovernanceState, step
from sharing_guard.core.policy import Policy
from sharing_guard.core.state import RecipientState
from sharing_guard.policy_file import load_policy
from sharing_guard.replay import LineError, replay
from sharing_guard.simulation import PROCESSOR_TYPES, simulate, to_jsonl

HERE = Path(__file__).resolve().parent
CEDAR_POLICY = HERE / "cedar" / "policy.cedar"
CEDAR_SCHEMA = HERE / "cedar" / "schema.cedarschema"
DEFAULT_OUT = HERE / "out" / "engine.json"
QUICK_OUT = HERE / "out" / "engine-quick.json"
TARGET_DECISIONS_PER_S = 50_000

_PROCESSOR_CODES = frozenset(
    {ReasonCode.RECIPIENT_NOT_REGISTERED, ReasonCode.PURPOSE_NOT_PERMITTED}
)

Registry = Map[str, RecipientState]


# -- timing --------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure: what one timed run decides, and the wall and CPU time of each."""

    label: str
    decisions: int
    events: int | None = None
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def per_second(self) -> float:
        """Decisions per second over the median run."""
        return self.decisions / self.median

    @property
    def best_per_second(self) -> float:
        """Decisions per second over the fastest run (the least disturbed by other load)."""
        return self.decisions / min(self.wall)

    @property
    def micros(self) -> float:
        """Microseconds per decision over the median run."""
        return self.median / self.decisions * 1e6

    @property
    def cpu_share(self) -> float:
        """CPU time over wall time: about 1 when the run had a core to itself."""
        return sum(self.cpu) / sum(self.wall)

    def timing_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "wall_s": [round(s, 6) for s in self.wall],
            "cpu_s": [round(s, 6) for s in self.cpu],
            "median_s": round(self.median, 6),
        }

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.timing_json(),
            "decisions": self.decisions,
            "decisions_per_s": round(self.per_second, 1),
            "best_decisions_per_s": round(self.best_per_second, 1),
            "us_per_decision": round(self.micros, 3),
            "cpu_share": round(self.cpu_share, 3),
        }
        if self.events is not None:
            out["events"] = self.events
            out["events_per_s"] = round(self.events / self.median, 1)
        return out


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the CLI runs)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


Run = tuple[Figure, Callable[[], Any], Callable[[Any], Any]]
"""A figure, the work it times, and what to keep of the work's result (untimed)."""


def measure(runs: Sequence[Run], repeat: int) -> list[Any]:
    """Time every run ``repeat`` times, interleaved (A B C A B C ...), into its figure.

    Interleaving spreads background load on a shared machine over all the runs compared.
    Each run starts after a full garbage collection, with no earlier run's result alive:
    only its digest is kept. Returns each run's last digest.
    """
    digests: list[Any] = [None] * len(runs)
    for _ in range(repeat):
        for index, (figure, run, digest) in enumerate(runs):
            gc.collect()
            wall, cpu = time.perf_counter(), _cpu_seconds()
            result = run()
            figure.wall.append(time.perf_counter() - wall)
            figure.cpu.append(_cpu_seconds() - cpu)
            digests[index] = digest(result)
            del result
    return digests


def _nothing(_: object) -> None:
    return None


# -- preparation (untimed) -----------------------------------------------------------


@dataclass
class Prepared:
    """The generated events and everything the timed loops take as given."""

    events: list[Event]
    jsonl: bytes
    pairs: list[tuple[TransferRequested, Facts]]
    """Each first delivery of a transfer with the facts the ledger gathered for it."""
    reference: list[Decision]
    """The ledger's decision for each pair."""
    registry_of: list[int]
    """For each pair, the index in ``registries`` of the recipients it was decided on."""
    registries: list[Registry]
    decision_lines: int
    """Decisions ``replay`` emits: one per transfer line, redeliveries included."""


def prepare(events: list[Event], policy: Policy) -> Prepared:
    """Run the ledger once, keeping the facts and the recipient registry per transfer."""
    state = GovernanceState()
    registries: list[Registry] = [state.recipients]
    pairs: list[tuple[TransferRequested, Facts]] = []
    reference: list[Decision] = []
    registry_of: list[int] = []
    lines = 0
    for event in events:
        first = False
        if isinstance(event, TransferRequested) and event.event_id not in state.seen:
            first = True
            pairs.append((event, gather_facts(event, state)))
            registry_of.append(len(registries) - 1)
        result = step(state, event, policy)
        if result.decision is not None:
            lines += 1
            if first:
                reference.append(result.decision)
        if result.state.recipients is not state.recipients:
            registries.append(result.state.recipients)
        state = result.state
    return Prepared(events, to_jsonl(events), pairs, reference, registry_of, registries, lines)


# -- the engine ------------------------------------------------------------------------


def _evaluate_all(
    pairs: Sequence[tuple[TransferRequested, Facts]], policy: Policy
) -> list[Decision]:
    return [evaluate(transfer, facts, policy) for transfer, facts in pairs]


def _step_all(events: Iterable[Event], policy: Policy) -> list[Decision]:
    state = GovernanceState()
    decisions: list[Decision] = []
    for event in events:
        result = step(state, event, policy)
        state = result.state
        if result.decision is not None:
            decisions.append(result.decision)
    return decisions


def _replay_all(jsonl: bytes, policy: Policy) -> int:
    """What ``sharing-guard replay`` does, in-process, writing into memory."""
    sink = io.StringIO()
    decisions = 0
    for item in replay(io.BytesIO(jsonl), policy):
        if isinstance(item, LineError):
            raise RuntimeError(f"generated line rejected: {item.to_json()}")
        sink.write(item.model_dump_json() + "\n")
        decisions += 1
    return decisions


def bench_engine(prep: Prepared, policy: Policy, repeat: int) -> dict[str, Figure]:
    """The engine alone, the step loop and the in-process replay, interleaved."""
    figures = {
        "engine_evaluate": Figure("engine.evaluate, facts pre-gathered", len(prep.pairs)),
        "ledger_step": Figure(
            "ledger.step loop, parsed events", prep.decision_lines, len(prep.events)
        ),
        "replay_in_process": Figure(
            "replay in-process, JSONL -> JSON", prep.decision_lines, len(prep.events)
        ),
    }
    same, stepped, replayed = measure(
        [
            (
                figures["engine_evaluate"],
                lambda: _evaluate_all(prep.pairs, policy),
                lambda out: out == prep.reference,
            ),
            (figures["ledger_step"], lambda: _step_all(prep.events, policy), len),
            (figures["replay_in_process"], lambda: _replay_all(prep.jsonl, policy), int),
        ],
        repeat,
    )
    if not same:
        raise RuntimeError("evaluate over pre-gathered facts differs from the ledger")
    if stepped != prep.decision_lines:
        raise RuntimeError("the step loop made an unexpected number of decisions")
    if replayed != prep.decision_lines:
        raise RuntimeError("in-process replay made an unexpected number of decisions")
    return figures


# -- the command line ------------------------------------------------------------------


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("sharing-guard")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "sharing_guard.cli"]


def _run_cli(path: Path) -> None:
    done = subprocess.run(
        [*_cli(), "replay", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sharing-guard replay exited {done.returncode}: {done.stderr[:500]!r}")


def bench_cli(prep: Prepared, repeat: int) -> tuple[Figure, Figure]:
    """The real CLI on the generated file, and its start-up alone (on an empty file)."""
    with tempfile.TemporaryDirectory(prefix="sg-bench-") as tmp:
        events, empty = Path(tmp) / "events.jsonl", Path(tmp) / "empty.jsonl"
        events.write_bytes(prep.jsonl)
        empty.write_bytes(b"")
        figure = Figure(
            "sharing-guard replay CLI, process incl.", prep.decision_lines, len(prep.events)
        )
        startup = Figure("CLI start-up alone (empty file)", 0)
        measure(
            [
                (figure, lambda: _run_cli(events), _nothing),
                (startup, lambda: _run_cli(empty), _nothing),
            ],
            repeat,
        )
    return figure, startup


# -- Cedar -------------------------------------------------------------------------------


def covered_by_cedar(transfer: TransferRequested) -> bool:
    """Transfers whose outcome on the two encoded rule families Cedar can decide."""
    return (
        transfer.recipient.type in PROCESSOR_TYPES
        or DataCategory.VIRTUAL_DRIVE_DATA in transfer.data_categories
    )


def engine_passes_families(transfer: TransferRequested, decision: Decision) -> bool:
    """Whether the engine's decision has no block from the two encoded rule families."""
    codes = set(decision.codes)
    if ReasonCode.VDD_EGRESS_FORBIDDEN in codes:
        return False
    return transfer.recipient.type not in PROCESSOR_TYPES or not codes & _PROCESSOR_CODES


def _entities_json(registry: Registry) -> str:
    return json.dumps(
        [
            {
                "uid": {"type": "Recipient", "id": rid},
                "attrs": {
                    "recipient_type": state.recipient_type.value,
                    "permitted_purposes": sorted(p.value for p in state.permitted_purposes),
                },
                "parents": [],
            }
            for rid, state in registry.items()
        ]
    )


def cedar_request(transfer: TransferRequested) -> dict[str, Any]:
    """The Cedar request for one transfer (context serialised once, up front)."""
    context = {
        "recipient_type": transfer.recipient.type.value,
        "purpose": transfer.purpose.value,
        "data_categories": [c.value for c in transfer.data_categories],
    }
    return {
        "principal": {"type": "Service", "id": transfer.source_service},
        "action": {"type": "Action", "id": "transfer"},
        "resource": {"type": "Recipient", "id": transfer.recipient.id},
        "context": json.dumps(context),
    }


@dataclass
class CedarInputs:
    """Everything cedarpy is given, parsed and built before any timing."""

    policies: Any
    requests: list[dict[str, Any]]
    entities_of: list[Any]
    """For each request, the parsed entity handle of the registry it is decided on."""
    batches: list[tuple[Any, list[dict[str, Any]]]]
    """Consecutive requests on the same registry: what a Cedar-based guard could batch."""


def cedar_inputs(prep: Prepared, covered: Sequence[int]) -> CedarInputs:
    policy_text, schema_text = CEDAR_POLICY.read_text(), CEDAR_SCHEMA.read_text()
    check = cedarpy.validate_policies(policy_text, schema_text)
    if not check.validation_passed:
        raise RuntimeError(f"Cedar policy does not validate: {check.errors}")
    handles: dict[int, Any] = {}
    requests: list[dict[str, Any]] = []
    entities_of: list[Any] = []
    batches: list[tuple[Any, list[dict[str, Any]]]] = []
    last_version = -1
    for index in covered:
        version = prep.registry_of[index]
        if version not in handles:
            handles[version] = cedarpy.Entities.from_json_str(
                _entities_json(prep.registries[version]), schema=schema_text
            )
        request = cedar_request(prep.pairs[index][0])
        requests.append(request)
        entities_of.append(handles[version])
        if version != last_version:
            batches.append((handles[version], []))
            last_version = version
        batches[-1][1].append(request)
    return CedarInputs(cedarpy.PolicySet.from_str(policy_text), requests, entities_of, batches)


def _cedar_per_call(inputs: CedarInputs) -> list[Any]:
    policies = inputs.policies
    return [
        cedarpy.is_authorized(request, policies, entities)
        for request, entities in zip(inputs.requests, inputs.entities_of, strict=True)
    ]


def _cedar_batched(inputs: CedarInputs) -> list[Any]:
    results: list[Any] = []
    for entities, requests in inputs.batches:
        results.extend(cedarpy.is_authorized_batch(requests, inputs.policies, entities))
    return results


Verdict = tuple[bool, bool]
"""What the agreement count needs of one Cedar answer: allowed, and whether it erred."""


def _verdicts(results: Sequence[Any]) -> list[Verdict]:
    return [(result.allowed, bool(result.diagnostics.errors)) for result in results]


def _disagreement(
    inputs: CedarInputs, position: int, transfer: TransferRequested, decision: Decision
) -> dict[str, Any]:
    """The details of one disagreement, asking Cedar again (untimed) for its reasons."""
    again = cedarpy.is_authorized(
        inputs.requests[position], inputs.policies, inputs.entities_of[position]
    )
    return {
        "event_id": transfer.event_id,
        "engine": [code.value for code in decision.codes],
        "cedar": again.decision.value,
        "cedar_policies": [
            again.diagnostics.id_annotations_by_reason.get(pid, pid)
            for pid in again.diagnostics.reasons
        ],
        "cedar_errors": again.diagnostics.errors,
    }


def _agreement(
    prep: Prepared,
    covered: Sequence[int],
    inputs: CedarInputs,
    batched: Sequence[Verdict],
    per_call: Sequence[Verdict],
) -> dict[str, Any]:
    if batched != per_call:
        raise RuntimeError("cedarpy batched and per-call answers differ")
    agree = 0
    disagreements: list[dict[str, Any]] = []
    for position, (index, (allowed, _)) in enumerate(zip(covered, batched, strict=True)):
        transfer, decision = prep.pairs[index][0], prep.reference[index]
        if allowed == engine_passes_families(transfer, decision):
            agree += 1
        elif len(disagreements) < 10:
            disagreements.append(_disagreement(inputs, position, transfer, decision))
    allowed_count = sum(allowed for allowed, _ in batched)
    return {
        "agree": agree,
        "total": len(covered),
        "cedar_allow": allowed_count,
        "cedar_deny": len(covered) - allowed_count,
        "cedar_evaluation_errors": sum(erred for _, erred in batched),
        "disagreements": disagreements,
    }


def _cedar_metrics(results: Sequence[Any]) -> dict[str, float]:
    """The mean of each ``*_micros`` timing cedarpy reports per request (whole micros)."""
    totals: Counter[str] = Counter()
    for result in results:
        totals.update({k: v for k, v in result.metrics.items() if k.endswith("_micros")})
    return {key: round(total / len(results), 2) for key, total in totals.items()}


def bench_cedar(prep: Prepared, policy: Policy, repeat: int) -> dict[str, Any]:
    """cedarpy batched and per call, and the engine, on the covered transfers, interleaved."""
    covered = [i for i, (transfer, _) in enumerate(prep.pairs) if covered_by_cedar(transfer)]
    inputs = cedar_inputs(prep, covered)
    pairs = [prep.pairs[i] for i in covered]
    engine = Figure("engine.evaluate, Cedar-covered transfers", len(covered))
    batch = Figure(f"cedarpy batch, {len(inputs.batches)} calls", len(covered))
    call = Figure("cedarpy is_authorized, a call per decision", len(covered))
    _, (batched, metrics), per_call = measure(
        [
            (engine, lambda: _evaluate_all(pairs, policy), _nothing),
            (batch, lambda: _cedar_batched(inputs), lambda r: (_verdicts(r), _cedar_metrics(r))),
            (call, lambda: _cedar_per_call(inputs), _verdicts),
        ],
        repeat,
    )
    return {
        "covered": len(covered),
        "of_transfers": len(prep.pairs),
        "batches": len(inputs.batches),
        "average_batch": round(len(covered) / len(inputs.batches), 1),
        "engine": engine,
        "batch": batch,
        "per_call": call,
        "cedar_self_reported_us": metrics,
        "agreement": _agreement(prep, covered, inputs, batched, per_call),
    }


# -- profile -------------------------------------------------------------------------------


def profile(prep: Prepared, policy: Policy) -> None:
    """Print where the time of the evaluate and step loops goes (cProfile, top 15)."""
    for label, run in (
        ("engine.evaluate", lambda: _evaluate_all(prep.pairs, policy)),
        ("ledger.step loop", lambda: _step_all(prep.events, policy)),
    ):
        profiler = cProfile.Profile()
        profiler.runcall(run)
        print(f"\n== cProfile: {label} (top 15 by own time) ==")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


# -- machine and report --------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _field(text: str, name: str) -> str | None:
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def _git() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def _memory_total() -> str | None:
    total = _field(_read("/proc/meminfo"), "MemTotal")  # e.g. "24731708 kB"
    if total is None or not total.endswith(" kB"):
        return total
    return f"{int(total.removesuffix(' kB')) / 2**20:.1f} GiB"


def machine() -> dict[str, Any]:
    packages = ("pydantic", "pydantic-core", "immutables", "cedarpy")
    return {
        "cpu_model": _field(_read("/proc/cpuinfo"), "model name") or platform.processor(),
        "logical_cpus": os.cpu_count(),
        "memory_total": _memory_total(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "packages": {name: metadata.version(name) for name in packages},
        "git": _git(),
    }


def pin_to_one_cpu() -> int | None:
    """Pin this process (and the CLI it starts) to one CPU, so one core is one core."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def mix(prep: Prepared) -> dict[str, Any]:
    outcomes = Counter(d.outcome.value for d in prep.reference)
    codes = Counter(code.value for d in prep.reference for code in d.codes)
    return {
        "events": len(prep.events),
        "by_type": dict(Counter(event.type for event in prep.events).most_common()),
        "transfer_lines": prep.decision_lines,
        "redelivered_transfers": prep.decision_lines - len(prep.pairs),
        "allow": outcomes[Outcome.ALLOW.value],
        "block": outcomes[Outcome.BLOCK.value],
        "codes": dict(codes.most_common()),
    }


# -- report --------------------------------------------------------------------------------

_HEADER = (
    f"  {'figure':<44}{'decisions':>10}{'median s':>10}{'dec/s med':>12}{'dec/s best':>12}"
    f"{'µs/dec':>8}{'cpu':>6}"
)


def _row(figure: Figure) -> str:
    return (
        f"  {figure.label:<44}{figure.decisions:>10,}{figure.median:>10.3f}"
        f"{figure.per_second:>12,.0f}{figure.best_per_second:>12,.0f}"
        f"{figure.micros:>8.2f}{figure.cpu_share:>6.2f}"
    )


def _ratios(cedar: dict[str, Any]) -> dict[str, Any]:
    """Engine time per decision over Cedar's, per mode; the headline is Cedar's faster mode."""
    engine: Figure = cedar["engine"]
    ratios: dict[str, Any] = {
        mode: round(engine.micros / cedar[mode].micros, 4) for mode in ("batch", "per_call")
    }
    ratios["headline"] = min(("batch", "per_call"), key=lambda mode: cedar[mode].micros)
    return ratios


def _verdict(figure: Figure) -> str:
    met = figure.per_second >= TARGET_DECISIONS_PER_S
    return (
        f"{figure.label}: {figure.per_second:,.0f}/s (median) "
        f"{'>=' if met else '<'} {TARGET_DECISIONS_PER_S:,}/s: {'MET' if met else 'MISSED'}"
    )


def _targets(figures: dict[str, Figure], ratios: dict[str, Any]) -> dict[str, str]:
    mode = ratios["headline"]
    faster = ratios[mode] < 1
    return {
        "evaluate": _verdict(figures["engine_evaluate"]),
        "step": _verdict(figures["ledger_step"]),
        "faster_than_cedar": (
            f"engine faster per decision than cedarpy ({mode}): {'MET' if faster else 'MISSED'}"
        ),
    }


def build_report(
    *,
    run: dict[str, Any],
    prep: Prepared,
    figures: dict[str, Figure],
    startup: Figure,
    cedar: dict[str, Any],
) -> dict[str, Any]:
    ratios = _ratios(cedar)
    out: dict[str, Any] = {name: figure.to_json() for name, figure in figures.items()}
    out["cli_startup"] = startup.timing_json()
    out["cedar"] = {k: v.to_json() if isinstance(v, Figure) else v for k, v in cedar.items()}
    out["cedar"]["ratio_engine_over_cedar"] = ratios
    return {
        "run": run,
        "mix": mix(prep),
        "figures": out,
        "targets": _targets(figures, ratios),
    }


def _own_timings(metrics: dict[str, float]) -> str:
    shown = {k.removesuffix("_duration_micros"): v for k, v in metrics.items() if v}
    return ", ".join(f"{k} ~{v:.1f} µs" for k, v in shown.items()) or "none reported"


def _pinning(cpu: int | None) -> str:
    return "not pinned" if cpu is None else f"pinned to CPU {cpu}"


def print_table(
    report: dict[str, Any], figures: dict[str, Figure], startup: Figure, cedar: dict[str, Any]
) -> None:
    run, info, m = report["run"], report["run"]["machine"], report["mix"]
    print(
        f"\nsharing-guard engine benchmark: {run['events']:,} events (seed {run['seed']}), "
        f"{run['repeat']} interleaved runs per figure"
    )
    print(
        f"machine: {info['cpu_model']}, {info['logical_cpus']} CPUs, {info['memory_total']}, "
        f"{info['python']}; {_pinning(run['pinned_to_cpu'])}; load average "
        f"{run['load_before']} before, {run['load_after']} after"
    )
    print(
        f"mix: {m['transfer_lines']:,} transfer lines ({m['redelivered_transfers']} redelivered), "
        f"{m['allow']:,} ALLOW / {m['block']:,} BLOCK, {len(m['codes'])} distinct codes\n"
    )
    print(_HEADER)
    for figure in figures.values():
        print(_row(figure))
    print(f"  (CLI start-up alone, on an empty file: {startup.median:.3f} s median)")
    print(
        f"\n  Cedar-covered transfers: {cedar['covered']:,} of {cedar['of_transfers']:,} "
        f"(processor types, and any carrying VIRTUAL_DRIVE_DATA)"
    )
    for key in ("engine", "batch", "per_call"):
        print(_row(cedar[key]))
    ratios = report["figures"]["cedar"]["ratio_engine_over_cedar"]
    agreement = cedar["agreement"]
    print(
        f"  cedarpy's own timings per request: {_own_timings(cedar['cedar_self_reported_us'])}"
        f"\n  engine/cedar time per decision: batch {ratios['batch']:.3f}, "
        f"per call {ratios['per_call']:.3f}; headline (Cedar's faster mode): "
        f"{ratios['headline']}, engine {1 / ratios[ratios['headline']]:.1f}x faster"
        f"\n  agreement on the two rule families: {agreement['agree']:,}/{agreement['total']:,}"
        f" (Cedar evaluation errors: {agreement['cedar_evaluation_errors']})\n"
    )
    for verdict in report["targets"].values():
        print(f"  target: {verdict}")


# -- command -------------------------------------------------------------------------------


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The policy-engine benchmark.")
    parser.add_argument("--events", type=int, default=100_000, help="events to generate")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure")
    parser.add_argument("--quick", action="store_true", help="2,000 events, one run: a smoke test")
    parser.add_argument("--pin", action="store_true", help="pin the process to one CPU")
    parser.add_argument("--profile", action="store_true", help="also print cProfile tables")
    parser.add_argument("--out", type=Path, help=f"JSON output (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.repeat = 2000, 1
    if args.out is None:
        args.out = QUICK_OUT if args.quick else DEFAULT_OUT
    return args


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    run: dict[str, Any] = {"events": args.events, "seed": args.seed, "repeat": args.repeat}
    run["pinned_to_cpu"] = pin_to_one_cpu() if args.pin else None
    run["started_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    run["machine"] = machine()
    policy = load_policy()
    print(f"generating {args.events:,} events (seed {args.seed}) ...", file=sys.stderr)
    prep = prepare(simulate(args.events, args.seed), policy)
    # The fixtures (events, facts, reference decisions) live for the whole run; freezing
    # them keeps the collector from rescanning them inside every timed loop.
    gc.collect()
    gc.freeze()
    run["load_before"] = _load()
    print("timing ...", file=sys.stderr)
    figures = bench_engine(prep, policy, args.repeat)
    figures["replay_cli"], startup = bench_cli(prep, args.repeat)
    cedar = bench_cedar(prep, policy, args.repeat)
    run["load_after"] = _load()
    report = build_report(run=run, prep=prep, figures=figures, startup=startup, cedar=cedar)
    print_table(report, figures, startup, cedar)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfigures written to {args.out}")
    if args.profile:
        profile(prep, policy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
