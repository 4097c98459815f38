"""C2SP tlog-proof bundles: spec example, round trips, and tampering of each part."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from audit_sink.checkpoint import (
    InvalidSignatureError,
    MalformedNoteError,
    NoteSigner,
    OriginMismatchError,
    UnverifiedNoteError,
    open_checkpoint,
    sign_checkpoint,
)
from audit_sink.merkle import (
    CompactRange,
    InvalidProofError,
    SubtreeHasher,
    VerificationError,
    inclusion_proof,
    leaf_hash,
)
from audit_sink.proof_bundle import (
    HEADER,
    ProofBundleError,
    build_proof_bundle,
    open_proof_bundle,
    parse_proof_bundle,
    verify_proof_bundle,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "vectors" / "signed_note.json").read_text("utf-8")
)

ORIGIN = "audit.test.invalid/bundle-log"
SIGNER = NoteSigner.from_seed(ORIGIN, hashlib.sha256(b"bundle seed").digest())
TRUSTED = [SIGNER.verifier()]
STRANGER = NoteSigner.from_seed(ORIGIN, hashlib.sha256(b"another seed").digest())


def entries(size: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(size)]


def make_bundle(index: int, size: int, extra: bytes | None = None) -> tuple[str, list[bytes]]:
    leaves = entries(size)
    hashes = [leaf_hash(x) for x in leaves]
    built = CompactRange()
    built.extend(hashes)
    note = sign_checkpoint(ORIGIN, size, built.root(), SIGNER)
    proof = inclusion_proof(index, size, SubtreeHasher.from_sequence(hashes))
    return build_proof_bundle(index, proof, note, extra), leaves


def test_spec_example_parses() -> None:
    example = VECTORS["c2sp_tlog_proof_example"]
    bundle = parse_proof_bundle(example["bundle"])
    assert bundle.index == example["index"]
    assert bundle.extra == base64.b64decode(example["extra_base64"])
    assert bundle.extra is not None
    assert bundle.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert [base64.b64encode(h).decode() for h in bundle.proof] == example["proof_base64"]
    assert bundle.checkpoint == example["checkpoint"]
    # Its signatures are elided with "[...]" in the spec, so the note cannot open.
    with pytest.raises(MalformedNoteError):
        open_checkpoint(bundle.checkpoint, TRUSTED)


@pytest.mark.parametrize(("index", "size"), [(0, 1), (0, 2), (1, 2), (5, 13), (12, 13), (99, 100)])
def test_round_trip(index: int, size: int) -> None:
    text, leaves = make_bundle(index, size)
    assert text.startswith(f"{HEADER}\nindex {index}\n")
    bundle = parse_proof_bundle(text)
    assert bundle.index == index
    assert bundle.extra is None
    assert build_proof_bundle(bundle.index, bundle.proof, bundle.checkpoint) == text
    verify_proof_bundle(text, leaves[index], TRUSTED, ORIGIN)
    verify_proof_bundle(text.encode(), leaves[index], TRUSTED, ORIGIN)
    result = open_proof_bundle(text, leaves[index], TRUSTED, ORIGIN)
    assert (result.index, result.checkpoint.size, result.checkpoint.origin) == (
        index,
        size,
        ORIGIN,
    )


def test_round_trip_with_extra() -> None:
    text, leaves = make_bundle(3, 8, extra=b"\x00opaque\xff")
    assert text.split("\n")[1] == "extra " + base64.b64encode(b"\x00opaque\xff").decode()
    assert parse_proof_bundle(text).extra == b"\x00opaque\xff"
    assert open_proof_bundle(text, leaves[3], TRUSTED, ORIGIN).extra == b"\x00opaque\xff"
    empty, _ = make_bundle(3, 8, extra=b"")
    assert parse_proof_bundle(empty).extra == b""


def test_size_one_tree_has_no_proof_lines() -> None:
    text, leaves = make_bundle(0, 1)
    assert text.startswith(f"{HEADER}\nindex 0\n\n{ORIGIN}\n1\n")
    verify_proof_bundle(text, leaves[0], TRUSTED, ORIGIN)


def _lines(text: str) -> list[str]:
    return text.split("\n")


def _with_line(text: str, number: int, value: str) -> str:
    lines = _lines(text)
    lines[number] = value
    return "\n".join(lines)


def test_tampering_is_rejected() -> None:
    text, leaves = make_bundle(5, 13)
    leaf = leaves[5]
    lines = _lines(text)
    proof_lines = [i for i, line in enumerate(lines[2:], 2) if line][:4]
    first_hash = base64.b64decode(lines[proof_lines[0]])
    flipped = base64.b64encode(bytes([first_hash[0] ^ 1]) + first_hash[1:]).decode()
    blank = lines.index("")
    checkpoint_start = blank + 1
    cases: dict[str, tuple[str, bytes, type[VerificationError]]] = {
        "other leaf": (text, leaves[6], InvalidProofError),
        "index + 1": (_with_line(text, 1, "index 6"), leaf, InvalidProofError),
        "index - 1": (_with_line(text, 1, "index 4"), leaf, InvalidProofError),
        "index beyond size": (_with_line(text, 1, "index 13"), leaf, InvalidProofError),
        "flipped proof bit": (_with_line(text, 2, flipped), leaf, InvalidProofError),
        "removed proof line": (
            "\n".join(lines[:2] + lines[3:]),
            leaf,
            InvalidProofError,
        ),
        "added proof line": (
            "\n".join([*lines[:2], lines[2], *lines[2:]]),
            leaf,
            InvalidProofError,
        ),
        "checkpoint size changed": (
            _with_line(text, checkpoint_start + 1, "14"),
            leaf,
            InvalidSignatureError,
        ),
        "checkpoint root changed": (
            _with_line(text, checkpoint_start + 2, base64.b64encode(b"\x00" * 32).decode()),
            leaf,
            InvalidSignatureError,
        ),
        "checkpoint origin changed": (
            _with_line(text, checkpoint_start, ORIGIN + "x"),
            leaf,
            InvalidSignatureError,
        ),
        "signature removed": (
            "\n".join(lines[: checkpoint_start + 4]) + "\n",
            leaf,
            MalformedNoteError,
        ),
    }
    accepted = []
    for name, (bad, data, error) in cases.items():
        try:
            verify_proof_bundle(bad, data, TRUSTED, ORIGIN)
        except error:
            continue
        accepted.append(name)
    assert accepted == []


def test_valid_proof_with_untrusted_or_foreign_checkpoint_is_rejected() -> None:
    # Checking only the inclusion proof proves nothing: the checkpoint must be trusted.
    leaves = entries(9)
    hashes = [leaf_hash(x) for x in leaves]
    built = CompactRange()
    built.extend(hashes)
    proof = inclusion_proof(4, 9, SubtreeHasher.from_sequence(hashes))
    forged = build_proof_bundle(4, proof, sign_checkpoint(ORIGIN, 9, built.root(), STRANGER))
    with pytest.raises(UnverifiedNoteError):
        verify_proof_bundle(forged, leaves[4], TRUSTED, ORIGIN)
    genuine = build_proof_bundle(4, proof, sign_checkpoint(ORIGIN, 9, built.root(), SIGNER))
    verify_proof_bundle(genuine, leaves[4], TRUSTED, ORIGIN)
    with pytest.raises(OriginMismatchError):
        verify_proof_bundle(genuine, leaves[4], TRUSTED, "audit.test.invalid/other-log")


def test_trusted_checkpoint_of_another_tree_is_rejected() -> None:
    # Checking only the signature proves nothing: the proof must lead to its root.
    text, leaves = make_bundle(2, 5)
    other, _ = make_bundle(2, 6)
    spliced = text.split("\n\n", 1)[0] + "\n\n" + other.split("\n\n", 1)[1]
    open_checkpoint(spliced.split("\n\n", 1)[1], TRUSTED)  # the checkpoint itself is fine
    with pytest.raises(InvalidProofError):
        verify_proof_bundle(spliced, leaves[2], TRUSTED, ORIGIN)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.replace(HEADER, "c2sp.org/tlog-proof@v2"), "start with"),
        (lambda t: "\n" + t, "start with"),
        (lambda t: t.replace("index 5\n", ""), "index"),
        (lambda t: t.replace("index 5\n", "index 05\n"), "leading zeros"),
        (lambda t: t.replace("index 5\n", "index -5\n"), "leading zeros"),
        (lambda t: t.replace("index 5\n", "index  5\n"), "leading zeros"),
        (lambda t: t.replace("index 5\n", "Index 5\n"), "index"),
        (lambda t: t.replace("index 5\n", "index 5\nextra AAAA\n"), "canonical base64"),
        (lambda t: t.replace(f"{HEADER}\n", f"{HEADER}\nextra !!\n"), "extra"),
        (lambda t: t.replace("index 5\n", "index 5\n" + "A" * 42 + "==\n"), "32-byte"),
        (lambda t: t.replace("index 5\n", "index 5\n" + "AAAA\n"), "32-byte"),
        (lambda t: t.replace("\n\n", "\n", 1), "base64"),
        (lambda t: t.split("\n\n", 1)[0] + "\n\n", "no checkpoint"),
        (lambda t: t.split("\n\n", 1)[0] + "\n", "no empty line"),
        (
            lambda t: t.replace("index 5\n", "index 5\n" + ("A" * 43 + "=\n") * 65),
            "more than 64",
        ),
        (lambda t: t.encode("utf-8") + b"\xff", "UTF-8"),
    ],
)
def test_malformed_bundles_rejected(mutate: Any, message: str) -> None:
    text, leaves = make_bundle(5, 13)
    with pytest.raises(ProofBundleError, match=message):
        verify_proof_bundle(mutate(text), leaves[5], TRUSTED, ORIGIN)


def test_crlf_bundle_rejected() -> None:
    text, leaves = make_bundle(5, 13)
    with pytest.raises(VerificationError):
        verify_proof_bundle(text.replace("\n", "\r\n"), leaves[5], TRUSTED, ORIGIN)


def test_build_validates_input() -> None:
    text, _ = make_bundle(1, 4)
    bundle = parse_proof_bundle(text)
    with pytest.raises(ValueError, match="index"):
        build_proof_bundle(-1, bundle.proof, bundle.checkpoint)
    with pytest.raises(ValueError, match="32-byte"):
        build_proof_bundle(1, [b"short"], bundle.checkpoint)
    with pytest.raises(ValueError, match="at most 64"):
        build_proof_bundle(1, [b"\x00" * 32] * 65, bundle.checkpoint)
    with pytest.raises(ValueError, match="malformed"):
        build_proof_bundle(1, bundle.proof, "not a note\n")
