"""Running real guard workers against the real broker, for integration and fault tests.

Each test gets its own topics (a unique suffix) and its own Faust application id, so
tests never see each other's records. Workers run as separate processes, exactly as in
production (``python -m sharing_guard.cli worker``), configured only by environment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from sharing_guard.codec import contract_registry
from sharing_guard.contract import Decision, Event, RecipientType, TransferRequested
from sharing_guard.settings import Topics

ACCOUNT_TOPICS = ("transfers", "consents", "rights", "decisions", "approved", "blocked", "shadow")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_topics(bootstrap: str, partitions: int = 6) -> Topics:
    """Create a private set of the guard's topics and return their names."""
    suffix = uuid.uuid4().hex[:8]
    names = {name: f"{value}.{suffix}" for name, value in Topics().model_dump().items()}
    topics = Topics(**names)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(
                    value,
                    partitions if name in ACCOUNT_TOPICS else (3 if name == "audit" else 1),
                    1,
                )
                for name, value in names.items()
            ]
        )
    finally:
        admin.close()
    return topics


def guard_env(bootstrap: str, topics: Topics, app_id: str, data_dir: Path) -> dict[str, str]:
    """The environment of a worker: nothing but variables, as in Kubernetes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARING_GUARD_")}
    env.update(
        {
            "SHARING_GUARD_BOOTSTRAP_SERVERS": bootstrap,
            "SHARING_GUARD_APP_ID": app_id,
            "SHARING_GUARD_DATA_DIR": str(data_dir),
            "SHARING_GUARD_ACCOUNT_PARTITIONS": "6",
            "SHARING_GUARD_LOG_LEVEL": os.environ.get("TEST_GUARD_LOG_LEVEL", "WARNING"),
        }
    )
    for name, value in topics.model_dump().items():
        env[f"SHARING_GUARD_TOPICS__{name.upper()}"] = value
    return env


@dataclass
class GuardProcess:
    """One guard worker process."""

    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    reported_not_ready: bool = False

    def start(self) -> GuardProcess:
        env = {**self.env, "SHARING_GUARD_WEB_PORT": str(self.port)}
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sharing_guard.cli", "worker"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited: {self.log.read_text()[-3000:]}")
            try:
                status = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code
            except httpx.HTTPError:
                status = None
            if status == 200:
                return
            if status == 503:
                self.reported_not_ready = True
            time.sleep(0.3)
        raise AssertionError(f"worker not ready in {timeout_s}s: {self.log.read_text()[-3000:]}")

    def ready_now(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def decisions_made(self) -> float:
        """The worker's own count of decisions (its Prometheus counter)."""
        return self.counter("sharing_guard_decisions_total")

    def counter(self, name: str) -> float:
        """The sum of a Prometheus counter of the worker over all its labels."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith((f"{name}{{", f"{name} ")):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def diagnose(self) -> str:
        """Ask the worker to log its tasks and flow state (SIGUSR1); its log's end."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(3)
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        interesting = [
            line
            for line in text.splitlines()
            if "flow:" in line or "read back" in line or "not acknowledged" in line
        ]
        return f"--- {self.log.name}: ---\n" + "\n".join(interesting[-80:]) + "\n" + text[-4000:]

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def diagnosed(*workers: GuardProcess) -> Iterator[None]:
    """On a failed assertion, add each live worker's flow state and log to the message."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(w.diagnose() for w in workers)) from exc


class TopicReader:
    """Reads everything a topic received, from the beginning, decoding when asked."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.records: list[Any] = []

    def _fetch(self, timeout_ms: int = 200) -> list[Any]:
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        return [record for records in batches.values() for record in records]

    def poll(self) -> list[Any]:
        self.records.extend(self._fetch())
        return self.records

    def close(self) -> None:
        self.consumer.close()


class DecisionReader(TopicReader):
    """Collects decisions from ``sharing.decisions`` by event id (first one wins)."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        super().__init__(bootstrap, topics.decisions)
        self.registry = contract_registry()
        self.first: dict[str, Decision] = {}
        self.all: list[tuple[Decision, dict[str, bytes]]] = []

    def poll(self) -> list[Any]:
        new = self._fetch()
        self.records.extend(new)
        for record in new:
            decision = self.registry.decode(record.value)
            self.all.append((decision, dict(record.headers or [])))
            self.first.setdefault(decision.event_id, decision)
        return self.records

    def wait_for(self, event_ids: Iterable[str], timeout_s: float = 60) -> dict[str, Decision]:
        wanted = set(event_ids)
        deadline = time.monotonic() + timeout_s
        while not wanted <= self.first.keys():
            if time.monotonic() > deadline:
                missing = sorted(wanted - self.first.keys())
                raise AssertionError(f"{len(missing)} decisions missing, e.g. {missing[:5]}")
            self.poll()
        return {event_id: self.first[event_id] for event_id in wanted}


def sequential_runs(events: Sequence[Event]) -> list[list[Event]]:
    """Split a corpus into runs that Kafka must process in the same order replay does.

    Governance events and ordinary transfers are grouped; a run of transfers must be
    decided before the next governance run is produced (so later state cannot be applied
    early), and each law-enforcement transfer is a run of its own (its order's quota is
    spent in the order stage, across account partitions).
    """
    runs: list[list[Event]] = []
    for event in events:
        is_transfer = isinstance(event, TransferRequested)
        solo = is_transfer and event.recipient.type is RecipientType.LAW_ENFORCEMENT
        if runs and not solo and isinstance(runs[-1][0], TransferRequested) == is_transfer:
            last = runs[-1][0]
            if not (
                isinstance(last, TransferRequested)
                and last.recipient.type is RecipientType.LAW_ENFORCEMENT
            ):
                runs[-1].append(event)
                continue
        runs.append([event])
    return runs
