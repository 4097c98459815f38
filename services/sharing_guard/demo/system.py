"""The rest of the system around the demo's guard: the audit sink, the order service and
the alerts service, each run as in production, plus the commands the security team runs
on the trail at the end.

* :class:`AuditSink`: ``audit-sink keygen`` (the signing key, made on first run, in the
  run's directory), ``audit-sink ingest`` (SQLite) while the demo runs, and at the end
  ``ingest --stop-at-end`` (every audit record of the run in the log), ``verify``,
  ``query``, ``proof`` and ``report``.
* :class:`OrderDesk`: a token for each of the two legal officers (``sharing-guard orders
  token``), ``sharing-guard orders serve``, and the officers' calls to its HTTP API.
* :func:`alerts_process`: ``sharing-guard alerts``, posting to the demo's webhook.

Each is configured only by its environment variables; consumer groups are named after the
guard's application id, so that a private run removes them with its topics.
"""

import json
import secrets
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import httpx

from sharing_guard.contract.types import format_timestamp
from sharing_guard.demo.guard import ServiceProcess, command, free_port
from sharing_guard.demo.story import OFFICERS, DeskCall
from sharing_guard.settings import Topics

COMMAND_TIMEOUT_S = 120.0
"""The longest any one command of the end-of-run checks may take."""


def clean_env(base: Mapping[str, str], *prefixes: str) -> dict[str, str]:
    """``base`` without any variable of the given prefixes (the run sets its own)."""
    return {k: v for k, v in base.items() if not k.startswith(prefixes)}


def _run(
    argv: list[str], env: Mapping[str, str], log: Path | None = None, ok: tuple[int, ...] = (0,)
) -> str:
    """Run one command; its standard output (``RuntimeError`` naming it when it exits
    with a status not in ``ok``); its standard error goes to ``log``."""
    result = subprocess.run(
        argv,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if log is not None:
        with log.open("a", encoding="utf-8") as handle:
            handle.write(result.stderr)
    if result.returncode not in ok:
        tail = " ".join(result.stderr.strip().splitlines()[-2:])
        raise RuntimeError(f"{' '.join(argv[-2:])} exited {result.returncode}: {tail}")
    return result.stdout


@dataclass(frozen=True, slots=True)
class Verified:
    """What ``audit-sink verify --json`` reported."""

    ok: bool
    size: int
    checkpoints: int
    summary: str


class AuditSink:
    """The audit sink of the run: its key, its ingest and the checks on its trail."""

    def __init__(
        self, base: Mapping[str, str], workdir: Path, *, bootstrap: str, topic: str, app_id: str
    ) -> None:
        self.dir = workdir / "audit-sink"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "audit-sink.log"
        self.origin = f"demo.sharing-guard.invalid/{app_id}"
        self.token = ""
        self.api_port = 0
        self.env = clean_env(base, "AUDIT_SINK_")
        self.env.update(
            {
                "AUDIT_SINK_ORIGIN": self.origin,
                "AUDIT_SINK_BACKEND": "sqlite",
                "AUDIT_SINK_DATA_DIR": str(self.dir),
                "AUDIT_SINK_AUDIT_TOPIC": topic,
                "AUDIT_SINK_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                "AUDIT_SINK_KAFKA__GROUP_ID": f"{app_id}-audit-sink",
                "AUDIT_SINK_IDLE_CHECKPOINT_MS": "1000",
            }
        )

    def keygen(self) -> str:
        """Create the signing key (first run) and pin its verifier key, and make the index
        key of the account tags; the vkey."""
        out = _run(command("audit-sink", "keygen"), self.env, self.log_path)
        vkey = out.strip().splitlines()[-1]
        self.env["AUDIT_SINK_VKEY"] = vkey
        index = _run(command("audit-sink", "keygen", "--index-key"), self.env, self.log_path)
        self.env["AUDIT_SINK_INDEX_KEY"] = index.strip()  # in the run's environment only
        return vkey

    def api(self) -> ServiceProcess:
        """``audit-sink serve`` (the HTTP API and the security console) on a free port, with
        a fresh token of the run (:attr:`token`)."""
        self.token = secrets.token_urlsafe(32)
        self.api_port = free_port()
        env = {**self.env, "AUDIT_SINK_API_TOKEN": self.token}
        argv = command("audit-sink", "serve", "--port", str(self.api_port))
        log = self.log_path.with_name("audit-api.log")
        return ServiceProcess("audit API", argv, env, log, self.api_port, ready_path="/healthz")

    def log_exists(self) -> bool:
        """Whether the ingest has created the log (the API opens it at start)."""
        return (self.dir / "log.db").is_file()

    def ingest(self) -> ServiceProcess:
        """``audit-sink ingest``, until stopped."""
        return ServiceProcess(
            "audit sink", command("audit-sink", "ingest"), self.env, self.log_path, None
        )

    def catch_up(self) -> None:
        """Ingest what is left of the audit topic, then stop (every record of the run)."""
        _run(command("audit-sink", "ingest", "--stop-at-end"), self.env, self.log_path)

    def verify(self) -> Verified:
        """Verify the whole log against its checkpoints and the pinned key."""
        out = _run(command("audit-sink", "verify", "--json"), self.env, self.log_path, (0, 1))
        report = json.loads(out)
        summary = (
            f"{report['size']} entries, {report['checkpoints_verified']} signed checkpoints "
            f"verified, {report['problem_count']} problems"
        )
        return Verified(report["ok"], report["size"], report["checkpoints_verified"], summary)

    def decided_events(self) -> set[str]:
        """The event ids of every decision in the log."""
        out = _run(command("audit-sink", "query", "--format", "jsonl"), self.env, self.log_path)
        rows = (json.loads(line) for line in out.splitlines() if line.strip())
        return {row["event_id"] for row in rows if row["kind"] == "DECISION"}

    def proof(self, event_id: str) -> str:
        """The C2SP tlog-proof of one decision."""
        return _run(command("audit-sink", "proof", event_id), self.env, self.log_path)

    def report(self, start: datetime, end: datetime) -> str:
        """The transparency report of ``[start, end)``, as a table."""
        argv = command(
            "audit-sink",
            "report",
            "--from",
            format_timestamp(start),
            "--to",
            format_timestamp(end),
        )
        return _run(argv, self.env, self.log_path)


class OrderDesk:
    """The order service of the run and the two officers who call it."""

    def __init__(
        self, base: Mapping[str, str], workdir: Path, *, bootstrap: str, topics: Topics
    ) -> None:
        self.dir = workdir / "orders"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "orders.log"
        self.tokens_file = self.dir / "tokens.json"
        self.port = free_port()
        self.env = clean_env(base, "SHARING_GUARD_")
        self.env.update(
            {
                "SHARING_GUARD_ORDERS_BOOTSTRAP_SERVERS": bootstrap,
                "SHARING_GUARD_ORDERS_ORDERS_TOPIC": topics.orders,
                "SHARING_GUARD_ORDERS_DECISIONS_TOPIC": topics.decisions,
                "SHARING_GUARD_ORDERS_TOKENS_FILE": str(self.tokens_file),
                "SHARING_GUARD_ORDERS_STATE_FILE": str(self.dir / "orders.sqlite3"),
                "SHARING_GUARD_ORDERS_PORT": str(self.port),
            }
        )
        self.tokens: dict[str, str] = {}

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def issue_tokens(self) -> None:
        """A token for each officer; only their hashes go to the tokens file."""
        for officer in OFFICERS:
            argv = command(
                "sharing-guard",
                "orders",
                "token",
                "--officer",
                officer,
                "--role",
                "legal_officer",
                "--valid-days",
                "1",
                "--tokens-file",
                str(self.tokens_file),
            )
            self.tokens[officer] = _run(argv, self.env, self.log_path).strip()

    def serve(self) -> ServiceProcess:
        """``sharing-guard orders serve``."""
        argv = command("sharing-guard", "orders", "serve")
        return ServiceProcess("order service", argv, self.env, self.log_path, self.port)

    def call(self, call: DeskCall) -> tuple[int, str]:
        """Make an officer's call; the status and the service's message for a refusal."""
        headers = {"Authorization": f"Bearer {self.tokens[call.officer]}"}
        if call.action == "register":
            url = f"{self.url}/orders"
        else:
            url = f"{self.url}/orders/{quote(call.order_ref, safe='')}/{call.action}"
        response = httpx.post(url, json=call.body(), headers=headers, timeout=30.0)
        detail = ""
        if response.status_code >= 400:
            try:
                detail = str(response.json().get("detail", ""))[:120]
            except ValueError:
                detail = response.text[:120]
        return response.status_code, detail


def alerts_process(
    base: Mapping[str, str],
    workdir: Path,
    *,
    bootstrap: str,
    topics: Mapping[str, str],
    app_id: str,
    webhook_url: str,
) -> ServiceProcess:
    """``sharing-guard alerts`` for the run, posting to ``webhook_url``; ``topics`` are the
    ``SHARING_GUARD_TOPICS__*`` variables of the guard."""
    env = clean_env(base, "SHARING_GUARD_")
    port = free_port()
    env.update(
        {
            "SHARING_GUARD_ALERTS_WEBHOOK_URL": webhook_url,
            "SHARING_GUARD_ALERTS_BOOTSTRAP_SERVERS": bootstrap,
            "SHARING_GUARD_ALERTS_GROUP_ID": f"{app_id}-alerts",
            "SHARING_GUARD_ALERTS_AUTO_OFFSET_RESET": "earliest",
            "SHARING_GUARD_ALERTS_WEB_PORT": str(port),
            **{
                name.replace("SHARING_GUARD_TOPICS__", "SHARING_GUARD_ALERTS_TOPICS__"): value
                for name, value in topics.items()
            },
        }
    )
    argv = command("sharing-guard", "alerts")
    return ServiceProcess("alerts service", argv, env, workdir / "alerts.log", port)
