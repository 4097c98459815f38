"""Without ``AUDIT_SINK_ORIGIN`` the audit sink refuses to start, and says what to set.

There is deliberately no default origin: it names the log in every signed checkpoint, so a
silent default would sign checkpoints of unrelated deployments under the same name.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from audit_sink.cli import main

EXIT_CANNOT_RUN = 2


@pytest.mark.parametrize("argv", [["keygen"], ["verify"], ["proof", "evt-1"], ["query"]])
def test_a_command_without_an_origin_says_what_to_set(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("AUDIT_SINK_ORIGIN", raising=False)
    monkeypatch.setenv("AUDIT_SINK_DATA_DIR", str(tmp_path))

    assert main(argv) == EXIT_CANNOT_RUN

    err = capsys.readouterr().err
    assert err.startswith("audit-sink: AUDIT_SINK_ORIGIN is not set"), err
    assert "export AUDIT_SINK_ORIGIN=audit.example.com/sharing-guard/prod" in err
    assert "unique per deployment" in err
    assert list(tmp_path.iterdir()) == [], "nothing is created before the origin is known"
