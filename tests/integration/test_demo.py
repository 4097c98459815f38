"""``make demo`` end to end: scripts/demo.sh against the running Kafka broker.

The demo reuses the broker (``DEMO_BOOTSTRAP``), so it must use private topics and leave
the broker running. It runs the whole system as subprocesses (guard worker, audit sink
ingest, order service, alerts service), real traffic and the scripted story, whose court
order goes through the order service's HTTP API (four eyes refused, then approved by a
second officer) and whose Virtual Drive egress attempt raises an alert at the demo's
webhook; at the end it verifies the audit trail, proves the Virtual Drive block's
inclusion and prints the transparency report. Both tests check that nothing it started
survives it: no process carries the run's ``DEMO_RUN_ID`` in its environment afterwards
(the script, the demo and every service do while they run), and its private topics and
consumer groups are gone; its logs are kept where it says.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

pytestmark = pytest.mark.kafka

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_SH = REPO_ROOT / "scripts" / "demo.sh"
SCRIPTED_BLOCKS = ("ORDER_NOT_APPROVED", "ORDER_QUOTA_EXHAUSTED", "VDD_EGRESS_FORBIDDEN")


def demo_env(bootstrap: str, run_id: str, demo_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DEMO_", "SHARING_GUARD_", "AUDIT_SINK_"))
    }
    env.update(
        {
            "DEMO_BOOTSTRAP": bootstrap,
            "DEMO_RUN_ID": run_id,
            "DEMO_PLAIN": "1",
            "DEMO_DIR": str(demo_dir),
            "PYTHON": sys.executable,
            **extra,
        }
    )
    return env


def assert_logs_kept(output: str, demo_dir: Path, run_id: str) -> None:
    kept = demo_dir / run_id
    assert f"logs and data kept in {kept}" in output
    for name in ("worker.log", "orders.log", "alerts.log", "audit-sink.log"):
        assert (kept / name).is_file(), name


def processes_of(run_id: str) -> list[str]:
    """Live (not zombie) processes whose environment names this run."""
    marker = f"DEMO_RUN_ID={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found.append(f"{entry.name}: {cmdline}")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def kafka_leftovers(bootstrap: str, run_id: str) -> list[str]:
    """Topics and consumer groups that name this run."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        topics = [name for name in admin.list_topics() if run_id in name]
        groups = [g["group_id"] for g in admin.list_groups() if run_id in g["group_id"]]
        return topics + groups
    finally:
        admin.close()


def summary_counts(output: str) -> tuple[dict[str, int], dict[str, int]]:
    """(outcomes, reason codes) from the final summary."""
    assert "sharing-guard demo: summary" in output, output[-3000:]
    summary = output.split("sharing-guard demo: summary", 1)[1]
    outcomes_block = summary.split("  outcomes:\n", 1)[1].split("  by reason code:\n", 1)[0]
    codes_block = summary.split("  by reason code:\n", 1)[1].split("  story:", 1)[0]
    pattern = re.compile(r"^ {4}([A-Z_]+) (\d+)$", re.MULTILINE)
    outcomes = {name: int(n) for name, n in pattern.findall(outcomes_block)}
    codes = {name: int(n) for name, n in pattern.findall(codes_block)}
    return outcomes, codes


def assert_left_nothing(bootstrap: str, run_id: str) -> None:
    deadline = time.monotonic() + 10
    while processes_of(run_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_of(run_id) == []
    assert kafka_leftovers(bootstrap, run_id) == []


def test_demo_runs_for_its_duration_then_stops_cleanly(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run_id = f"t{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [str(DEMO_SH)],
        env=demo_env(kafka_bootstrap, run_id, tmp_path, DEMO_SECONDS="20"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output[-4000:]
    assert "already running; left running" in output
    assert f"every name ending in .demo-{run_id}" in output
    assert "stopping: 20 s are over" in output
    outcomes, codes = summary_counts(output)
    assert outcomes["ALLOW"] > 0
    assert outcomes["BLOCK"] > 0
    for code in SCRIPTED_BLOCKS:
        assert codes.get(code, 0) > 0, code
    assert codes.get("CONSENT_MISSING", 0) + codes.get("CONSENT_WITHDRAWN", 0) > 0
    assert "NOT as expected" not in output
    for code in SCRIPTED_BLOCKS:  # the story's own steps, decided as scripted
        assert re.search(rf"\[ok\] .* -> BLOCK {code}", output), code
    # The officers went through the order service's HTTP API, four eyes included.
    assert re.search(
        r"\[ok\] officer-anna registers court order ZH/2026/101 .* -> HTTP 201", output
    )
    assert re.search(
        r"\[ok\] officer-anna approves her own order.* -> HTTP 409 \(four eyes", output
    )
    assert re.search(r"\[ok\] officer-bruno approves order ZH/2026/101 -> HTTP 200", output)
    assert re.search(r"\[ok\] .* -> ALLOW ORDER \[C-LAW-ENFORCEMENT\]", output)
    # The Virtual Drive egress attempt reached the security team's webhook.
    assert re.search(r"\[ok\] alert to the security team: .* -> webhook VDD_EGRESS_BLOCKED", output)
    assert re.search(r"  alerts: +[1-9]\d* received", output)
    # The security team's checks on the trail, over every decision of the run.
    verified = re.search(
        r"audit trail: verify OK \((\d+) entries.*every one of the (\d+) decisions", output
    )
    assert verified, output[-4000:]
    assert int(verified.group(1)) >= int(verified.group(2)) > 0
    assert "inclusion proof of the Virtual Drive block story1-evt-" in output
    assert "Orders received: 1" in output
    assert "Disclosures (transfers allowed under an order): 2" in output
    # The consoles' addresses, with the tokens of the run to sign in with.
    assert re.search(
        r"security console: http://127\.0\.0\.1:\d+/console/ \(token [A-Za-z0-9_-]{32,};", output
    )
    assert re.search(
        r"officers' console: http://127\.0\.0\.1:\d+/console/ "
        r"\(tokens officer-anna: \S+, officer-bruno: \S+\)",
        output,
    )
    assert "audit API stopped (status 0)" in output
    assert "PROBLEM" not in output
    assert_logs_kept(output, tmp_path, run_id)
    assert_left_nothing(kafka_bootstrap, run_id)


def test_ctrl_c_stops_everything_it_started(kafka_bootstrap: str, tmp_path: Path) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it."""
    run_id = f"t{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(
        [str(DEMO_SH)],
        env=demo_env(kafka_bootstrap, run_id, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        for line in process.stdout:
            lines.append(line)
            if "sending about" in line:
                break
            assert time.monotonic() < deadline, "".join(lines)
        time.sleep(5)
        assert processes_of(run_id), "the demo's processes should be running now"
        os.killpg(process.pid, signal.SIGINT)
        try:
            rest, _ = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            late, _ = process.communicate()  # all it printed after ``lines``
            printed = "".join(lines) + (late or "")
            raise AssertionError(
                f"the demo did not stop within 120 s:\n{printed[-6000:]}"
            ) from None
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = "".join(lines) + rest
    assert process.returncode == 0, output[-4000:]
    assert "stopping: SIGINT received" in output
    for service in ("guard worker", "order service", "alerts service", "audit sink", "audit API"):
        assert f"{service} stopped (status 0)" in output, service
    outcomes, _ = summary_counts(output)
    assert outcomes["ALLOW"] + outcomes["BLOCK"] > 0
    assert "audit trail: verify OK" in output
    assert_logs_kept(output, tmp_path, run_id)
    assert_left_nothing(kafka_bootstrap, run_id)
