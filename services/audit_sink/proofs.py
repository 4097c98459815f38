"""Inclusion and consistency proofs against the latest signed checkpoint (plain functions).

:func:`prove_event` returns a C2SP tlog-proof bundle for one record, checkable offline
with only the log's public key: the bundle's ``extra`` line carries the leaf bytes, the
inclusion proof puts their RFC 6962 hash under the checkpoint's root, and the checkpoint is
signed. Before handing out a proof, the function opens the checkpoint with the pinned key
and verifies the proof itself, so a tampered store yields an error, never a bad proof.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from audit_sink.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from audit_sink.merkle import (
    InvalidProofError,
    SubtreeHasher,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from audit_sink.proof_bundle import build_proof_bundle
from audit_sink.store import LogReader

__all__ = ["InclusionProof", "ProofError", "prove_consistency", "prove_event", "signed_head"]


class ProofError(LookupError):
    """No proof can be given (unknown event, unsigned entry, or an inconsistent store)."""


@dataclass(frozen=True)
class InclusionProof:
    """A record's inclusion in a signed checkpoint, as a tlog-proof bundle."""

    index: int
    leaf: bytes
    checkpoint: Checkpoint
    bundle: str


def signed_head(
    reader: LogReader, trusted_keys: Sequence[NoteVerifier], origin: str
) -> tuple[Checkpoint, str]:
    """The latest stored checkpoint, opened with the pinned keys, and its note."""
    rows = reader.checkpoints()
    if not rows:
        raise ProofError("the log has no signed checkpoint yet")
    note = rows[-1].note
    try:
        return open_checkpoint(note, trusted_keys, origin=origin), note
    except NoteError as exc:
        raise ProofError(f"the latest checkpoint does not verify: {exc}") from None


def prove_event(
    reader: LogReader,
    event_id: str,
    *,
    trusted_keys: Sequence[NoteVerifier],
    origin: str,
    hasher: SubtreeHasher | None = None,
) -> InclusionProof:
    """The inclusion proof of the decision (else the governance change) about ``event_id``."""
    index = reader.find_record(f"DECISION:{event_id}")
    if index is None:
        index = reader.find_record(f"GOVERNANCE_CHANGE:{event_id}")
    if index is None:
        raise ProofError("no record of that event in the log")
    checkpoint, note = signed_head(reader, trusted_keys, origin)
    if index >= checkpoint.size:
        raise ProofError(
            f"entry {index} is not yet covered by a signed checkpoint (size {checkpoint.size})"
        )
    hasher = hasher or SubtreeHasher(reader.leaf_hashes)
    try:
        proof = inclusion_proof(index, checkpoint.size, hasher)
        leaf = reader.leaves([index])[index]
        verify_inclusion(leaf_hash(leaf), index, checkpoint.size, proof, checkpoint.root)
    except (InvalidProofError, LookupError, KeyError):
        raise ProofError(
            f"the store does not prove entry {index} under its checkpoint: run verify"
        ) from None
    bundle = build_proof_bundle(index, proof, note, extra=leaf)
    return InclusionProof(index, leaf, checkpoint, bundle)


def prove_consistency(
    reader: LogReader,
    old_size: int,
    *,
    trusted_keys: Sequence[NoteVerifier],
    origin: str,
    old_root: bytes | None = None,
    hasher: SubtreeHasher | None = None,
) -> tuple[list[bytes], Checkpoint]:
    """The consistency proof from ``old_size`` to the latest signed checkpoint.

    With ``old_root`` (the root of a checkpoint held elsewhere), the proof is also verified
    here (:class:`ProofError` if it does not lead from that root to the signed one).
    """
    checkpoint, _ = signed_head(reader, trusted_keys, origin)
    if not 0 < old_size <= checkpoint.size:
        raise ProofError(f"no consistency proof from size {old_size} to {checkpoint.size}")
    hasher = hasher or SubtreeHasher(reader.leaf_hashes)
    try:
        proof = consistency_proof(old_size, checkpoint.size, hasher)
    except LookupError:
        raise ProofError("the store is missing entries: run verify") from None
    if old_root is not None:
        try:
            verify_consistency(old_size, checkpoint.size, proof, old_root, checkpoint.root)
        except InvalidProofError as exc:
            raise ProofError(f"the log is not consistent with that checkpoint: {exc}") from None
    return proof, checkpoint
