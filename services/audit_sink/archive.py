"""Signed checkpoints written outside the database: one ``<size>.note`` file each.

The directory is what the security team archives (or ships to a SIEM, or a witness): a
checkpoint held there is the reference against which ``audit-sink verify
--trusted-checkpoint`` detects truncation, rollback and a consistently rewritten database.
Files are written atomically (temporary file, fsync, rename, fsync of the directory) and
never overwritten with different content.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Final

__all__ = ["ArchiveConflictError", "CheckpointArchive"]

_NAME: Final = re.compile(r"(0|[1-9][0-9]*)\.note")


class ArchiveConflictError(RuntimeError):
    """The archive already holds a different checkpoint for that size (a fork)."""


class CheckpointArchive:
    """A directory of signed checkpoint notes named by tree size."""

    def __init__(self, directory: Path) -> None:
        """Use ``directory`` (created on first write)."""
        self.directory = directory

    def path(self, size: int) -> Path:
        """The file of the checkpoint of ``size``."""
        return self.directory / f"{size}.note"

    def sizes(self) -> list[int]:
        """The sizes archived, ascending."""
        if not self.directory.is_dir():
            return []
        found = (_NAME.fullmatch(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m is not None)

    def read(self, size: int) -> str | None:
        """The note archived for ``size``, if any."""
        try:
            return self.path(size).read_text("utf-8")
        except FileNotFoundError:
            return None

    def latest(self) -> tuple[int, str] | None:
        """The largest archived checkpoint, if any."""
        sizes = self.sizes()
        if not sizes:
            return None
        note = self.read(sizes[-1])
        return None if note is None else (sizes[-1], note)

    def write(self, size: int, note: str) -> Path:
        """Write the note for ``size`` durably; ``ArchiveConflictError`` if another is there."""
        target = self.path(size)
        existing = self.read(size)
        if existing is not None:
            if existing != note:
                raise ArchiveConflictError(f"the archive holds another checkpoint {size}")
            return target
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{size}.note.{os.getpid()}.tmp"
        with temporary.open("w", encoding="utf-8", newline="") as handle:
            handle.write(note)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return target
