"""What a verification found: problem codes, problems pinned to entries, the report (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from audit_sink.checkpoint import Checkpoint

__all__ = ["Problem", "ProblemCode", "Report", "ordered"]


class ProblemCode(StrEnum):
    """What is wrong, as a stable code (the message adds the details)."""

    MISSING_ENTRIES = "missing-entries"
    LEAF_HASH_MISMATCH = "leaf-hash-mismatch"
    MALFORMED_LEAF = "malformed-leaf"
    MISPLACED_ENTRY = "misplaced-entry"
    CHAIN_BREAK = "chain-break"
    OFFSET_ORDER = "offset-order"
    PAYLOAD_MISMATCH = "payload-mismatch"
    PAYLOAD_MISSING = "payload-missing"
    ORPHAN_PAYLOAD = "orphan-payload"
    BAD_ERASURE = "bad-erasure"
    CHECKPOINT_INVALID = "checkpoint-invalid"
    ROOT_MISMATCH = "root-mismatch"
    TRUNCATED = "truncated"
    TRUSTED_CHECKPOINT_INVALID = "trusted-checkpoint-invalid"
    FORK = "fork"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the log.

    ``index`` is the first entry the problem concerns (``None`` when it concerns no entry,
    e.g. an unverifiable checkpoint); ``range_end`` closes a range ``[index, range_end)``
    when the problem can only be pinned to a range; ``checkpoint_size`` names the
    checkpoint concerned, if any.
    """

    code: ProblemCode
    message: str
    index: int | None = None
    range_end: int | None = None
    checkpoint_size: int | None = None
    bound: bool = False
    """The first bad entry is somewhere in ``[index, range_end)``, not necessarily ``index``."""

    @property
    def sort_key(self) -> tuple[int, int]:
        """Order: by entry index, then checkpoint size; entry problems first on ties."""
        if self.index is not None:
            return (self.index, 0)
        return (self.checkpoint_size if self.checkpoint_size is not None else 0, 1)

    def to_dict(self) -> dict[str, Any]:
        """The problem as a JSON-ready dict."""
        return {
            "code": self.code.value,
            "index": self.index,
            "range_end": self.range_end,
            "checkpoint_size": self.checkpoint_size,
            "bound": self.bound,
            "message": self.message,
        }


@dataclass(frozen=True)
class Report:
    """The outcome of a full verification."""

    size: int
    problems: tuple[Problem, ...]
    problem_count: int
    erased: int
    checkpoints_verified: int
    latest_checkpoint: Checkpoint | None
    trusted_sizes: tuple[int, ...]
    unsigned_tail: int

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return self.problem_count == 0

    @property
    def first(self) -> Problem | None:
        """The first problem (lowest entry index), if any."""
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        latest = self.latest_checkpoint
        return {
            "ok": self.ok,
            "size": self.size,
            "erased": self.erased,
            "checkpoints_verified": self.checkpoints_verified,
            "latest_checkpoint_size": None if latest is None else latest.size,
            "trusted_checkpoint_sizes": list(self.trusted_sizes),
            "unsigned_tail": self.unsigned_tail,
            "problem_count": self.problem_count,
            "problems": [p.to_dict() for p in self.problems],
        }


def ordered(problems: list[Problem]) -> tuple[Problem, ...]:
    """Problems by the entry they pin; a root mismatch explained by an entry problem inside
    its range (the precise finding) comes after it."""
    pinned = [p.index for p in problems if p.index is not None and not p.bound]
    earliest = min(pinned) if pinned else None

    def key(problem: Problem) -> tuple[int, int]:
        end = problem.range_end
        if problem.bound and end is not None and earliest is not None and earliest < end:
            return (end, 2)
        return problem.sort_key

    return tuple(sorted(problems, key=key))
