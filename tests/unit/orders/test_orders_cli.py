"""The officers' CLI against a real HTTP server (uvicorn on loopback, in-process store).

Each kind of failure is told apart, in words and in the exit status: service down,
no or bad token, wrong role, four eyes, unknown order, invalid fields (each named).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from orders_support import LocalService, local_service
from sharing_guard.cli import main
from sharing_guard.orders.auth import Authenticator, load_entries


@pytest.fixture
def served() -> Iterator[tuple[LocalService, str]]:
    local = local_service()
    config = uvicorn.Config(local.app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise AssertionError("server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield local, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _run(
    capsys: pytest.CaptureFixture[str], url: str, token: str | None, *args: str
) -> tuple[int, str, str]:
    options = ["--url", url] + (["--token", token] if token else [])
    command, rest = args[0], args[1:]
    status = main(["orders", command, *options, *rest])
    out, err = capsys.readouterr()
    return status, out, err


REGISTER = (
    "register",
    *("--order-ref", "o-cli", "--type", "COURT_ORDER", "--authority", "court-zh"),
    *("--jurisdiction", "CH", "--recipient", "police-zh", "--account", "acct-9"),
    *("--category", "VIRTUAL_DRIVE_DATA", "--valid-from", "2026-05-01T00:00:00Z"),
    *("--valid-until", "2026-07-01T00:00:00Z", "--max-disclosures", "3"),
)


def test_cli_tells_each_failure_apart(
    served: tuple[LocalService, str], capsys: pytest.CaptureFixture[str]
) -> None:
    local, url = served
    tokens = local.tokens

    status, out, _ = _run(capsys, url, tokens.officer_a, *REGISTER)
    assert status == 0
    assert "order o-cli: PENDING" in out

    status, _, err = _run(capsys, url, tokens.officer_a, "approve", "o-cli")
    assert status == 5
    assert "refused: four eyes" in err

    status, _, err = _run(capsys, url, None, "list")
    assert status == 4
    assert "not authenticated: missing bearer token" in err
    status, _, err = _run(capsys, url, tokens.expired, "list")
    assert (status, "token expired" in err) == (4, True)
    status, _, err = _run(capsys, url, tokens.reviewer, "revoke", "o-cli", "--reason", "x")
    assert status == 4
    assert "not allowed: role security_reviewer may not revoke orders" in err

    status, _, err = _run(capsys, url, tokens.officer_b, "show", "nope")
    assert status == 6
    assert "no order nope" in err

    bad = [a.replace("CH", "Switzerland").replace("o-cli", "o-bad") for a in REGISTER]
    bad[bad.index("--max-disclosures") + 1] = "0"
    status, _, err = _run(capsys, url, tokens.officer_a, *bad)
    assert status == 2
    assert "invalid request:" in err
    assert "  jurisdiction: String should match pattern" in err
    assert "  max_disclosures: Input should be greater than or equal to 1" in err

    status, out, _ = _run(capsys, url, tokens.officer_b, "approve", "o-cli", "--json")
    assert status == 0
    assert json.loads(out)["approved_by"] == "officer-b"
    status, out, _ = _run(capsys, url, tokens.reviewer, "list")
    assert status == 0
    assert out.splitlines()[0].split()[:2] == ["ORDER", "STATE"]
    assert out.splitlines()[1].split()[:2] == ["o-cli", "IN_FORCE"]


def test_cli_says_when_the_service_is_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, _, err = _run(capsys, f"http://127.0.0.1:{port}", "sgo_x", "list")
    assert status == 3
    assert "cannot reach the order service" in err
    assert "Connection refused" in err


def test_token_command_stores_only_the_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.json"
    for officer in ("officer-x", "officer-y"):
        assert main(["orders", "token", "--officer", officer, "--role", "legal_officer",
                     "--tokens-file", str(path)]) == 0  # fmt: skip
    first, second = capsys.readouterr().out.split()
    stored = path.read_text()
    assert first not in stored
    assert second not in stored
    assert path.stat().st_mode & 0o077 == 0
    entries = load_entries(path)
    assert [e.officer_id for e in entries] == ["officer-x", "officer-y"]
    from datetime import UTC, datetime

    who = Authenticator(entries).authenticate(f"Bearer {second}", datetime.now(UTC))
    assert who.officer_id == "officer-y"
