"""Builds small logs in memory (leaves, payloads, signed checkpoints) for the pure tests.

No store: the rows are what a store would hand the verifier, and ``write_export`` lays them
out as an export directory for the standalone verifier.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from audit_sink.checkpoint import NoteSigner, sign_checkpoint
from audit_sink.leaf import (
    ZERO_HASH,
    AnomalyCode,
    EntryType,
    Source,
    anomaly_body,
    encode_leaf,
    erasure_body,
)
from audit_sink.merkle import CompactRange, leaf_hash
from audit_sink.verify import LogVerifier, Report, StoredCheckpoint

ORIGIN = "audit.test.invalid/unit-log"
SIGNER = NoteSigner.from_seed(ORIGIN, hashlib.sha256(b"unit log seed").digest())
TOPIC = "governance.audit"


def record_body_for(n: int) -> dict[str, object]:
    """A record body (no personal data) for event ``n``."""
    return {
        "actor": None,
        "audit_id": f"DECISION:evt-{n}",
        "event_id": f"evt-{n}",
        "event_json": None,
        "event_type": "TransferRequested",
        "kind": "DECISION",
        "occurred_at": 1_793_000_000_000 + n,
        "order_ref": None,
        "outcome": "BLOCK",
        "policy_version": "2026.1",
        "reasons": [{"clause": "C-THIRD-PARTY-CONSENT", "code": "CONSENT_MISSING"}],
        "recipient_id": "rcp-1",
        "sealed": ["account_id", "event_json"],
    }


@dataclass
class MemoryLog:
    """Rows of a log as a store would return them, and its signed checkpoints."""

    rows: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    payloads: dict[int, bytes] = field(default_factory=dict)
    checkpoints: list[StoredCheckpoint] = field(default_factory=list)
    offsets: dict[int, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.rows)

    def _append(
        self,
        entry_type: EntryType,
        body: dict[str, object],
        payload: bytes | None,
        source: Source | None,
    ) -> int:
        index = self.size
        prev = self.rows[-1][2] if self.rows else ZERO_HASH
        digest = None if payload is None else hashlib.sha256(payload).digest()
        leaf = encode_leaf(
            entry_type, index=index, prev=prev, payload_digest=digest, source=source, body=body
        )
        self.rows.append((index, leaf, leaf_hash(leaf)))
        if payload is not None:
            self.payloads[index] = payload
        return index

    def record(self, partition: int = 0, sealed: bool = True) -> int:
        offset = self.offsets.get(partition, -1) + 1 + self.size % 3  # gaps are normal
        self.offsets[partition] = offset
        payload = hashlib.sha256(b"ciphertext %d" % self.size).digest() * 3 if sealed else None
        return self._append(
            EntryType.RECORD,
            record_body_for(self.size),
            payload,
            Source(TOPIC, partition, offset),
        )

    def anomaly(self) -> int:
        body = anomaly_body(AnomalyCode.UNDECODABLE, "not an AuditRecord", None, None)
        return self._append(EntryType.ANOMALY, body, b"sealed raw bytes", Source(TOPIC, 9, 0))

    def erasure(self, indices: Sequence[int], delete: bool = True) -> int:
        body = erasure_body(indices, datetime(2026, 12, 1, tzinfo=UTC))
        index = self._append(EntryType.ERASURE, body, None, None)
        if delete:
            for i in indices:
                self.payloads.pop(i, None)
        return index

    def sign(self, signer: NoteSigner = SIGNER) -> str:
        tree = CompactRange()
        tree.extend(h for _, _, h in self.rows)
        note = sign_checkpoint(ORIGIN, self.size, tree.root(), signer)
        self.checkpoints.append(StoredCheckpoint(self.size, note))
        return note

    def verify(
        self,
        chunk: int = 5,
        trusted: Sequence[str] = (),
        payloads_first: bool = False,
        slow_only: bool = False,
        rehash: bool = False,
    ) -> Report:
        """Verify the rows; ``rehash`` replaces stored hashes by the leaves' own (what an
        export carries, which has no stored hashes)."""
        verifier = LogVerifier(
            trusted_keys=[SIGNER.verifier()],
            origin=ORIGIN,
            checkpoints=self.checkpoints,
            trusted_checkpoints=trusted,
        )
        if slow_only:
            verifier._fast = lambda rows: None  # type: ignore[method-assign]
        payloads = sorted(self.payloads.items())
        if payloads_first:
            verifier.add_payloads(payloads)
        rows = [(i, leaf, leaf_hash(leaf)) for i, leaf, _ in self.rows] if rehash else self.rows
        for start in range(0, len(rows), chunk):
            verifier.add_leaves(rows[start : start + chunk])
        if not payloads_first:
            verifier.add_payloads(payloads)
        return verifier.finish()

    def write_export(self, directory: Path) -> None:
        """Lay the log out as an export directory (no stored hashes: as ``export`` does)."""
        record = struct.Struct(">QI")
        (directory / "checkpoints").mkdir(parents=True)
        (directory / "leaves.bin").write_bytes(
            b"".join(record.pack(i, len(leaf)) + leaf for i, leaf, _ in self.rows)
        )
        (directory / "payloads.bin").write_bytes(
            b"".join(record.pack(i, len(p)) + p for i, p in sorted(self.payloads.items()))
        )
        for stored in self.checkpoints:
            (directory / "checkpoints" / f"{stored.size}.note").write_text(stored.note, "utf-8")


def build(records: int = 20, every: int = 5, partitions: int = 3) -> MemoryLog:
    """A log of ``records`` record entries over ``partitions``, signed every ``every``."""
    log = MemoryLog()
    for n in range(records):
        log.record(partition=n % partitions, sealed=n % 4 != 3)
        if log.size % every == 0:
            log.sign()
    if log.size % every:
        log.sign()
    return log
