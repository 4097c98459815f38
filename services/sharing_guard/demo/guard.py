"""The demo's services as subprocesses, run as in production: the guard worker, the audit
sink's ingest, the order service and the alerts service.

Each is configured only by its environment variables (:func:`worker_env` for the guard:
a private application id, so its consumer group and changelog topics are its own, a
private data directory, the demo's topics, a free port for ``/readyz`` and ``/metrics``).
Each runs in a session of its own, so a Ctrl-C on the terminal reaches the demo, which
then stops them in order (SIGTERM, then SIGKILL after a grace period); on Linux each also
gets SIGTERM if the demo process dies without stopping it, so none can outlive the demo.
"""

import ctypes
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(program: str, *args: str) -> list[str]:
    """``program`` (``sharing-guard`` or ``audit-sink``) from this interpreter's
    environment, with ``args``."""
    script = Path(sys.executable).parent / program
    if script.exists():
        return [str(script), *args]
    module = "sharing_guard.cli" if program == "sharing-guard" else "audit_sink.cli"
    return [sys.executable, "-m", module, *args]


def worker_command() -> list[str]:
    """``sharing-guard worker`` from this interpreter's environment."""
    return command("sharing-guard", "worker")


def worker_env(
    base: Mapping[str, str],
    *,
    bootstrap: str,
    app_id: str,
    data_dir: Path,
    port: int,
    topics: Mapping[str, str],
) -> dict[str, str]:
    """``base`` without any ``SHARING_GUARD_*`` variable, plus the worker's own."""
    env = {k: v for k, v in base.items() if not k.startswith("SHARING_GUARD_")}
    env.update(
        {
            "SHARING_GUARD_BOOTSTRAP_SERVERS": bootstrap,
            "SHARING_GUARD_APP_ID": app_id,
            "SHARING_GUARD_DATA_DIR": str(data_dir),
            "SHARING_GUARD_WEB_HOST": "127.0.0.1",
            "SHARING_GUARD_WEB_PORT": str(port),
            "SHARING_GUARD_LOG_LEVEL": base.get("DEMO_GUARD_LOG_LEVEL", "WARNING"),
            **topics,
        }
    )
    unchecked = base.get("DEMO_UNCHECKED_WINDOW_S")
    if unchecked:  # a broker that cannot describe topic configs (the embedded Tansu)
        env["SHARING_GUARD_CHECK_RETENTION"] = "false"
        env["SHARING_GUARD_IDEMPOTENCY_WINDOW_S"] = unchecked
    return env


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ServiceProcess:
    """Start, watch and stop one service; its output goes to ``log_path``. ``port`` is
    where it answers ``ready_path`` (``None``: it has no health endpoint; it is ready once
    started)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        log_path: Path,
        port: int | None,
        *,
        ready_path: str = "/readyz",
    ) -> None:
        self.name = name
        self.ready_path = ready_path
        self.argv = argv
        self.env = dict(env)
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The worker's process id, once started."""
        return self.process.pid if self.process else None

    @property
    def url(self) -> str:
        """Where its health and metrics endpoints answer."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the process."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads run yet
            )

    def exit_code(self) -> int | None:
        """``None`` while it runs; its exit status once it has stopped."""
        return None if self.process is None else self.process.poll()

    def ready(self) -> bool:
        """True when its ready path answers 200 (or, without a port, once started)."""
        if self.port is None:
            return self.process is not None
        try:
            return httpx.get(f"{self.url}{self.ready_path}", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float, stop: threading.Event) -> str | None:
        """Wait until ready; ``None``, or why it is not (exited, timed out, stopped)."""
        deadline = time.monotonic() + timeout_s
        while not stop.is_set():
            code = self.exit_code()
            if code is not None:
                return f"the {self.name} exited with status {code} while starting"
            if self.ready():
                return None
            if time.monotonic() > deadline:
                return f"the {self.name} was not ready after {timeout_s:g} s"
            stop.wait(0.3)
        return f"stopped before the {self.name} was ready"

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL; return the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the process wrote."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def guard_process(env: Mapping[str, str], log_path: Path) -> ServiceProcess:
    """The guard worker configured by ``env`` (see :func:`worker_env`)."""
    port = int(env["SHARING_GUARD_WEB_PORT"])
    return ServiceProcess("guard worker", worker_command(), env, log_path, port)
