"""C2SP tlog-proof bundles: an offline proof that a leaf is in a log's signed checkpoint.

Pure: no I/O. The format (``c2sp.org/tlog-proof``), one item per newline-terminated line::

    c2sp.org/tlog-proof@v1
    extra <base64 opaque data>          (optional)
    index <decimal leaf index>
    <base64 inclusion proof hash>       (zero or more, leaf's sibling first)
                                        (an empty line)
    <the signed checkpoint note, verbatim>

Verifying a bundle (:func:`verify_proof_bundle`) checks **both** the checkpoint's signature
by a trusted key for the expected origin **and** the inclusion proof of the leaf's RFC 6962
hash against that checkpoint's root and size: either check alone proves nothing. The
``extra`` data is not authenticated and is only returned, never trusted.

Failures raise a :class:`~audit_sink.merkle.VerificationError`: :class:`ProofBundleError`
for a malformed bundle, a :class:`~audit_sink.checkpoint.NoteError` for a rejected
checkpoint, :class:`~audit_sink.merkle.InvalidProofError` for a failed inclusion proof.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from audit_sink._encoding import decode_base64, encode_base64, parse_uint64
from audit_sink.checkpoint import (
    MAX_NOTE_BYTES,
    Checkpoint,
    NoteError,
    NoteVerifier,
    open_checkpoint,
    parse_note,
)
from audit_sink.merkle import (
    HASH_SIZE,
    MAX_TREE_SIZE,
    VerificationError,
    leaf_hash,
    verify_inclusion,
)

__all__ = [
    "HEADER",
    "ProofBundle",
    "ProofBundleError",
    "VerifiedInclusion",
    "build_proof_bundle",
    "open_proof_bundle",
    "parse_proof_bundle",
    "verify_proof_bundle",
]

HEADER: Final = "c2sp.org/tlog-proof@v1"
"""First line of every proof bundle."""

_MAX_PROOF_HASHES: Final = 64  # a tree of fewer than 2**64 leaves has at most 64 levels
_MAX_BUNDLE_BYTES: Final = MAX_NOTE_BYTES + 64 * 1024


class ProofBundleError(VerificationError):
    """The text is not a well-formed tlog-proof bundle."""


@dataclass(frozen=True)
class ProofBundle:
    """A parsed, *unverified* proof bundle."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None


@dataclass(frozen=True)
class VerifiedInclusion:
    """What a verified bundle proves: leaf ``index`` is in the tree of ``checkpoint``.

    ``extra`` is the bundle's unauthenticated extra data, if any.
    """

    checkpoint: Checkpoint
    index: int
    extra: bytes | None


def build_proof_bundle(
    index: int,
    proof: Sequence[bytes],
    checkpoint_note: str,
    extra: bytes | None = None,
) -> str:
    """Return the tlog-proof text for leaf ``index`` with its inclusion ``proof``.

    ``checkpoint_note`` is the signed checkpoint the proof is relative to, included
    verbatim; it must be a well-formed signed note. ``extra`` (optional) is carried as
    opaque data. Raises ``ValueError`` if the index is outside ``[0, 2**64)``, a proof
    element is not 32 bytes, the proof is longer than 64 hashes, or the note is malformed.
    """
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_TREE_SIZE:
        raise ValueError(f"leaf index must be an int in [0, 2**64), got {index!r}")
    if len(proof) > _MAX_PROOF_HASHES:
        raise ValueError(f"an inclusion proof has at most {_MAX_PROOF_HASHES} hashes")
    for i, h in enumerate(proof):
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise ValueError(f"inclusion proof element #{i} is not a {HASH_SIZE}-byte hash")
    try:
        parse_note(checkpoint_note)
    except NoteError as exc:
        raise ValueError(f"checkpoint note is malformed: {exc}") from exc
    lines = [HEADER]
    if extra is not None:
        lines.append(f"extra {encode_base64(extra)}")
    lines.append(f"index {index}")
    lines.extend(encode_base64(h) for h in proof)
    lines.append("")
    return "".join(line + "\n" for line in lines) + checkpoint_note


def parse_proof_bundle(bundle_text: str | bytes) -> ProofBundle:
    """Parse a tlog-proof bundle without verifying anything.

    Raises :class:`ProofBundleError` unless the text is UTF-8, starts with the
    ``c2sp.org/tlog-proof@v1`` line, has an optional ``extra <base64>`` line, an ``index
    <decimal>`` line (no leading zeros, below ``2**64``), at most 64 lines of canonical
    base64 32-byte hashes, an empty line, and a non-empty checkpoint note (whose own
    well-formedness and signatures are checked when it is opened).
    """
    if isinstance(bundle_text, bytes):
        try:
            text = bundle_text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProofBundleError(f"proof bundle is not valid UTF-8: {exc}") from exc
    else:
        text = bundle_text
    if len(text) > _MAX_BUNDLE_BYTES:
        raise ProofBundleError(f"proof bundle is larger than {_MAX_BUNDLE_BYTES} bytes")
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise ProofBundleError(
            "proof bundle has no empty line between the proof and the checkpoint"
        )
    if not checkpoint:
        raise ProofBundleError("proof bundle has no checkpoint after the empty line")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise ProofBundleError(f"proof bundle does not start with the line {HEADER!r}")
    position = 1
    extra: bytes | None = None
    if position < len(lines) and lines[position].startswith("extra "):
        extra = decode_base64(lines[position][len("extra ") :])
        if extra is None:
            raise ProofBundleError("proof bundle 'extra' line is not canonical base64")
        position += 1
    if position >= len(lines) or not lines[position].startswith("index "):
        raise ProofBundleError(
            f"line {position + 1} of the proof bundle should be 'index <decimal>'"
        )
    index = parse_uint64(lines[position][len("index ") :])
    if index is None:
        raise ProofBundleError(
            "proof bundle index is not a decimal without leading zeros below 2**64"
        )
    hash_lines = lines[position + 1 :]
    if len(hash_lines) > _MAX_PROOF_HASHES:
        raise ProofBundleError(f"proof bundle has more than {_MAX_PROOF_HASHES} proof hashes")
    proof: list[bytes] = []
    for offset, line in enumerate(hash_lines):
        h = decode_base64(line)
        if h is None or len(h) != HASH_SIZE:
            raise ProofBundleError(
                f"line {position + 2 + offset} of the proof bundle is not canonical base64 "
                f"of a {HASH_SIZE}-byte hash"
            )
        proof.append(h)
    return ProofBundle(index, tuple(proof), checkpoint, extra)


def open_proof_bundle(
    bundle_text: str | bytes,
    leaf_bytes: bytes,
    trusted_verifiers: Iterable[NoteVerifier],
    origin: str,
) -> VerifiedInclusion:
    """Verify a proof bundle for the leaf ``leaf_bytes`` and return what it proves.

    Checks, in order: the bundle's format; that its checkpoint is signed by a trusted key
    and has origin ``origin`` (:func:`~audit_sink.checkpoint.open_checkpoint`); that the
    inclusion proof puts ``SHA-256(0x00 || leaf_bytes)`` at the bundle's index in the tree
    of the checkpoint's size and root (:func:`~audit_sink.merkle.verify_inclusion`).
    Raises :class:`ProofBundleError`, a :class:`~audit_sink.checkpoint.NoteError` or
    :class:`~audit_sink.merkle.InvalidProofError` on failure.
    """
    bundle = parse_proof_bundle(bundle_text)
    checkpoint = open_checkpoint(bundle.checkpoint, trusted_verifiers, origin=origin)
    verify_inclusion(
        leaf_hash(leaf_bytes), bundle.index, checkpoint.size, bundle.proof, checkpoint.root
    )
    return VerifiedInclusion(checkpoint, bundle.index, bundle.extra)


def verify_proof_bundle(
    bundle_text: str | bytes,
    leaf_bytes: bytes,
    trusted_verifiers: Iterable[NoteVerifier],
    origin: str,
) -> None:
    """Verify a proof bundle for ``leaf_bytes``; return ``None`` or raise.

    Same checks and errors as :func:`open_proof_bundle` (checkpoint signature and origin
    **and** inclusion proof), all subclasses of :class:`~audit_sink.merkle.VerificationError`.
    """
    open_proof_bundle(bundle_text, leaf_bytes, trusted_verifiers, origin)
