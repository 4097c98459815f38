"""Self-contained exports of the log, verifiable offline by ``verify_export.py``.

An export directory holds:

* ``leaves.bin``: every entry, in index order, as ``uint64 BE index || uint32 BE length ||
  leaf bytes``;
* ``payloads.bin`` (with ``include_payloads``): ``uint64 BE index || uint32 BE length ||
  sealed payload`` for every payload still stored (ciphertexts only: keys never leave the
  key store, so erased subjects stay unreadable in every copy);
* ``checkpoints/<size>.note``: every signed checkpoint;
* ``log.vkey``: the log's verifier key (a verifier should compare it with the published one);
* ``manifest.json``: format, origin, size, and the SHA-256 of each file;
* ``verify_export.py``: the standalone verifier (standard library and ``cryptography``);
* ``README.txt``: how to run it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import BinaryIO, Final

from audit_sink.checkpoint import NoteVerifier
from audit_sink.store import LogReader

__all__ = ["EXPORT_FORMAT", "ExportSummary", "export_log", "standalone_verifier_source"]

EXPORT_FORMAT: Final = "audit-sink-export/1"
_RECORD: Final = struct.Struct(">QI")
_README: Final = """This is an export of the audit-sink log {origin}.

Verify it offline (Python 3.11+ with the `cryptography` package):

    python3 -I verify_export.py . --vkey '<the vkey published by the log operator>'

`log.vkey` is the key the export claims; compare it with the published one. Add
`--trusted-checkpoint FILE` for checkpoints you hold from earlier: a log that was truncated,
rolled back or rewritten since then fails against them.
"""


@dataclass(frozen=True)
class ExportSummary:
    """What an export contains."""

    directory: Path
    size: int
    checkpoints: int
    payloads: int | None


def standalone_verifier_source() -> str:
    """The text of ``verify_export.py``."""
    return (resources.files("audit_sink.standalone") / "verify_export.py").read_text("utf-8")


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _write_records(handle: BinaryIO, rows: list[tuple[int, bytes]]) -> None:
    handle.write(b"".join(_RECORD.pack(i, len(data)) + data for i, data in rows))


def export_log(
    reader: LogReader,
    directory: Path,
    *,
    verifier: NoteVerifier,
    include_payloads: bool = False,
    chunk_size: int = 16384,
) -> ExportSummary:
    """Write the export of the reader's snapshot into ``directory`` (new or empty)."""
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} is not empty")
    (directory / "checkpoints").mkdir(parents=True, exist_ok=True)
    size = 0
    with (directory / "leaves.bin").open("wb") as handle:
        for rows in reader.leaf_chunks(chunk_size):
            _write_records(handle, [(i, leaf) for i, leaf, _ in rows])
            size = rows[-1][0] + 1
    payloads: int | None = None
    if include_payloads:
        payloads = 0
        with (directory / "payloads.bin").open("wb") as handle:
            for chunk in reader.payload_chunks(chunk_size):
                _write_records(handle, chunk)
                payloads += len(chunk)
    checkpoints = reader.checkpoints()
    for row in checkpoints:
        (directory / "checkpoints" / f"{row.size}.note").write_text(row.note, "utf-8")
    (directory / "log.vkey").write_text(verifier.vkey + "\n", "utf-8")
    (directory / "verify_export.py").write_text(standalone_verifier_source(), "utf-8")
    (directory / "README.txt").write_text(_README.format(origin=verifier.name), "utf-8")
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {
        "format": EXPORT_FORMAT,
        "origin": verifier.name,
        "vkey": verifier.vkey,
        "size": size,
        "checkpoints": [row.size for row in checkpoints],
        "payloads_included": include_payloads,
        "files": {str(p.relative_to(directory)): _file_sha256(p) for p in files},
    }
    (directory / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", "utf-8"
    )
    return ExportSummary(directory, size, len(checkpoints), payloads)
