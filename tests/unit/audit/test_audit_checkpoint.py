"""Signed notes and checkpoints: published vectors, round trips, tampering, malformed input.

Vectors in tests/vectors/signed_note.json (C2SP signed-note and tlog-checkpoint examples,
golang.org/x/mod sumdb/note test keys and notes); see the README there.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from audit_sink.checkpoint import (
    MAX_SIGNATURES,
    Checkpoint,
    InvalidSignatureError,
    KeyFormatError,
    MalformedCheckpointError,
    MalformedNoteError,
    NoteError,
    NoteSigner,
    NoteVerifier,
    OriginMismatchError,
    UnverifiedNoteError,
    format_checkpoint,
    key_id,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    parse_note,
    sign_checkpoint,
    sign_note,
)
from audit_sink.merkle import VerificationError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "vectors" / "signed_note.json").read_text("utf-8")
)
SPEC = VECTORS["c2sp_signed_note_example"]
GO = VECTORS["go_sumdb_note"]

ORIGIN = "audit.test.invalid/log-a"
ROOT = hashlib.sha256(b"root").digest()
SIGNER = NoteSigner.from_seed(ORIGIN, hashlib.sha256(b"test seed a").digest())
VERIFIER = SIGNER.verifier()
OTHER = NoteSigner.from_seed("audit.test.invalid/other", hashlib.sha256(b"test seed b").digest())


def go_signer() -> NoteSigner:
    # The Go skey is PRIVATE+KEY+<name>+<key ID>+base64(0x01 || 32-byte seed).
    _, _, name, _, material = GO["skey"].split("+", 4)
    raw = base64.b64decode(material)
    assert raw[0] == 1
    return NoteSigner.from_seed(name, raw[1:])


# --- published vectors ---------------------------------------------------------------


def test_c2sp_example_vkey_and_note() -> None:
    verifier = NoteVerifier.from_vkey(SPEC["vkey"])
    assert verifier.name == "example.com/foo"
    assert verifier.key_id == 0x530D903A
    assert key_id("example.com/foo", verifier.public_key) == 0x530D903A
    assert verifier.vkey == SPEC["vkey"]
    opened = open_note(SPEC["note"], [verifier])
    assert opened.text == SPEC["text"] == "This is an example message.\n"
    assert opened.verified_by == (verifier,)
    assert parse_note(SPEC["note"]).signatures[0].key_id == 0x530D903A


def test_c2sp_example_note_tampered_text_fails() -> None:
    verifier = NoteVerifier.from_vkey(SPEC["vkey"])
    with pytest.raises(InvalidSignatureError):
        open_note(SPEC["note"].replace("example message", "example messagE"), [verifier])


def test_c2sp_intro_note_text_keeps_its_blank_line() -> None:
    intro = VECTORS["c2sp_signed_note_intro"]
    note = parse_note(intro["note"])
    assert note.text == intro["text"]
    assert "\n\n" in note.text
    assert [s.name for s in note.signatures] == ["quasimodo.example/salvatore"]
    with pytest.raises(UnverifiedNoteError):
        open_note(intro["note"], [VERIFIER])


def test_c2sp_checkpoint_example_parses() -> None:
    example = VECTORS["c2sp_tlog_checkpoint_example"]
    note = parse_note(example["note"])
    checkpoint = parse_checkpoint(note.text)
    assert checkpoint.origin == example["origin"]
    assert checkpoint.size == example["size"]
    assert checkpoint.root == base64.b64decode(example["root_base64"])
    assert checkpoint.extensions == ()
    assert checkpoint.text == note.text
    # No vkey is published for it: opening with our keys must fail.
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(example["note"], [VERIFIER])


def test_go_signer_reproduces_the_published_note_byte_for_byte() -> None:
    signer = go_signer()
    assert signer.key_id == 0xC74F20A3
    assert signer.verifier().vkey == GO["vkey"]
    assert sign_note(GO["text"], [signer]) == GO["note"]


def test_go_notes_open_with_both_published_keys() -> None:
    peter = NoteVerifier.from_vkey(GO["vkey"])
    enoch = NoteVerifier.from_vkey(GO["enoch_vkey"])
    both = GO["note"] + GO["enoch_signature_line"]
    one = open_note(both, [peter])
    assert one.text == GO["text"]
    assert one.verified_by == (peter,)
    assert [s.name for s in one.ignored] == ["EnochRoot"]
    two = open_note(both, [peter, enoch])
    assert two.verified_by == (peter, enoch)
    assert two.ignored == ()
    with pytest.raises(UnverifiedNoteError, match="no signature from a trusted key"):
        open_note(both, [])


@pytest.mark.parametrize("desc", sorted(GO["bad_vkeys"]))
def test_go_bad_vkeys_rejected(desc: str) -> None:
    with pytest.raises(KeyFormatError):
        NoteVerifier.from_vkey(GO["bad_vkeys"][desc])


def test_every_mangling_of_a_vkey_is_rejected() -> None:
    vkey = GO["vkey"]
    NoteVerifier.from_vkey(vkey)
    for i in range(len(vkey)):
        for j in range(i + 1, len(vkey) + 1):
            if (i, j) != (0, len(vkey)):
                with pytest.raises(KeyFormatError):
                    NoteVerifier.from_vkey(vkey[i:j])
    for i, char in enumerate(vkey):
        mangled = vkey[:i] + chr(ord(char) + 1) + vkey[i + 1 :]
        with pytest.raises(KeyFormatError):
            NoteVerifier.from_vkey(mangled)
    with pytest.raises(KeyFormatError, match="key ID"):
        NoteVerifier.from_vkey(vkey.replace("c74f20a3", "c74f20a4"))
    with pytest.raises(KeyFormatError, match="hex"):
        NoteVerifier.from_vkey(vkey.replace("c74f20a3", "C74F20A3"))


@pytest.mark.parametrize(
    "message",
    [
        "text only",
        "text then blank line",
        "no final newline",
        "control character",
        "invalid UTF-8",
        "bad key name",
        "unexpected line",
    ],
)
def test_go_malformed_notes_rejected(message: str) -> None:
    text = GO["text"]
    sig = GO["note"][len(text) + 1 :]
    notes: dict[str, str | bytes] = {
        "text only": text,
        "text then blank line": text + "\n",
        "no final newline": text + "\n" + sig[:-1],
        "control character": "\x01" + text + "\n" + sig,
        "invalid UTF-8": b"\xff" + (text + "\n" + sig).encode(),
        "bad key name": text + "\n" + sig.replace("PeterNeumann", "Bad Name"),
        "unexpected line": text + "\n" + sig + "Unexpected line.\n",
    }
    with pytest.raises(MalformedNoteError):
        open_note(notes[message], [NoteVerifier.from_vkey(GO["vkey"])])


# --- checkpoints -----------------------------------------------------------------------


def test_sign_and_open_round_trip() -> None:
    note = sign_checkpoint(ORIGIN, 12345, ROOT, SIGNER)
    body = f"{ORIGIN}\n12345\n{base64.b64encode(ROOT).decode()}\n"
    assert note.startswith(body + "\n\u2014 " + ORIGIN + " ")
    assert note.endswith("\n")
    assert note.count("\n") == 5
    blob = base64.b64decode(note.rstrip("\n").rsplit(" ", 1)[1])
    assert int.from_bytes(blob[:4], "big") == SIGNER.key_id
    assert len(blob) == 4 + 64
    checkpoint = open_checkpoint(note, [VERIFIER])
    assert checkpoint == Checkpoint(ORIGIN, 12345, ROOT)
    assert open_checkpoint(note.encode(), [VERIFIER], origin=ORIGIN) == checkpoint


def test_empty_tree_checkpoint() -> None:
    root = hashlib.sha256(b"").digest()
    checkpoint = open_checkpoint(sign_checkpoint(ORIGIN, 0, root, SIGNER), [VERIFIER])
    assert checkpoint.size == 0
    assert checkpoint.root == root


def test_vkey_round_trip_and_key_id_derivation() -> None:
    vkey = VERIFIER.vkey
    name, id_hex, material = vkey.split("+", 2)
    assert name == ORIGIN
    raw = base64.b64decode(material)
    assert raw == b"\x01" + SIGNER.public_key
    expected = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + SIGNER.public_key).digest()[:4]
    assert id_hex == expected.hex()
    assert NoteVerifier.from_vkey(vkey) == VERIFIER
    key = Ed25519PrivateKey.generate()
    assert NoteVerifier.from_public_key("n", key.public_key()) == NoteSigner("n", key).verifier()
    assert "PRIVATE" not in repr(SIGNER)
    assert f"{SIGNER.key_id:08x}" in repr(SIGNER)


@pytest.mark.parametrize(
    ("line", "replacement"),
    [(0, "audit.test.invalid/log-b"), (1, "12346"), (2, base64.b64encode(b"\x01" * 32).decode())],
    ids=["origin", "size", "root"],
)
def test_modified_checkpoint_line_rejected(line: int, replacement: str) -> None:
    note = sign_checkpoint(ORIGIN, 12345, ROOT, SIGNER)
    lines = note.split("\n")
    lines[line] = replacement
    with pytest.raises(InvalidSignatureError):
        open_checkpoint("\n".join(lines), [VERIFIER])


def test_unknown_key_signature_is_ignored_and_alone_rejected() -> None:
    body = format_checkpoint(ORIGIN, 7, ROOT)
    both = sign_note(body, [OTHER, SIGNER])
    assert open_checkpoint(both, [VERIFIER]).size == 7
    only_other = sign_note(body, [OTHER])
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(only_other, [VERIFIER])
    # A garbage signature from an unknown key is not even looked at.
    garbage = base64.b64encode(b"\x00\x00\x00\x01" + b"x" * 10).decode()
    assert open_checkpoint(both + f"\u2014 someone.else {garbage}\n", [VERIFIER]).size == 7


def test_known_key_signature_under_another_name_or_id_is_not_trusted() -> None:
    note = sign_checkpoint(ORIGIN, 7, ROOT, SIGNER)
    renamed = note.replace(f"\u2014 {ORIGIN} ", "\u2014 audit.test.invalid/impostor ")
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(renamed, [VERIFIER])
    blob = base64.b64decode(note.rstrip("\n").rsplit(" ", 1)[1])
    other_id = (SIGNER.key_id ^ 1).to_bytes(4, "big") + blob[4:]
    reid = note.rsplit(" ", 1)[0] + " " + base64.b64encode(other_id).decode() + "\n"
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(reid, [VERIFIER])


def test_same_key_under_another_name_does_not_verify() -> None:
    # The key is trusted under name A; a signer using the same private key under name B
    # produces a key ID of B's, which is unknown.
    private = Ed25519PrivateKey.generate()
    trusted = NoteSigner("name-a", private).verifier()
    note = sign_checkpoint("name-a", 1, ROOT, NoteSigner("name-b", private))
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(note, [trusted])


def test_bad_signature_from_trusted_key_rejects_whole_note() -> None:
    note = sign_note(format_checkpoint(ORIGIN, 7, ROOT), [SIGNER, OTHER])
    lines = note.split("\n")
    blob = bytearray(base64.b64decode(lines[-2].rsplit(" ", 1)[1]))
    blob[10] ^= 1
    lines[-2] = lines[-2].rsplit(" ", 1)[0] + " " + base64.b64encode(bytes(blob)).decode()
    tampered = "\n".join(lines)
    assert open_checkpoint(tampered, [VERIFIER]).size == 7  # OTHER not trusted: ignored
    with pytest.raises(InvalidSignatureError, match="does not verify"):
        open_checkpoint(tampered, [VERIFIER, OTHER.verifier()])


def test_truncated_signature_from_trusted_key_rejected() -> None:
    note = sign_checkpoint(ORIGIN, 7, ROOT, SIGNER)
    prefix, b64 = note.rstrip("\n").rsplit(" ", 1)
    short = base64.b64encode(base64.b64decode(b64)[:-1]).decode()
    with pytest.raises(InvalidSignatureError):
        open_checkpoint(f"{prefix} {short}\n", [VERIFIER])


def test_origin_checks() -> None:
    note = sign_checkpoint(ORIGIN, 7, ROOT, SIGNER)
    assert open_checkpoint(note, [VERIFIER], origin=ORIGIN).origin == ORIGIN
    with pytest.raises(OriginMismatchError, match="not the expected"):
        open_checkpoint(note, [VERIFIER], origin="audit.test.invalid/log-b")
    # A checkpoint whose origin is not its signer's name needs the origin given explicitly.
    foreign = sign_checkpoint("audit.test.invalid/log-b", 7, ROOT, SIGNER)
    with pytest.raises(OriginMismatchError, match="matches no key"):
        open_checkpoint(foreign, [VERIFIER])
    assert open_checkpoint(foreign, [VERIFIER], origin="audit.test.invalid/log-b").size == 7


def test_extension_lines_are_accepted_when_parsing() -> None:
    body = format_checkpoint(ORIGIN, 7, ROOT) + "ext one\n\u2014 ext two\n"
    checkpoint = open_checkpoint(sign_note(body, [SIGNER]), [VERIFIER])
    assert checkpoint.extensions == ("ext one", "\u2014 ext two")
    assert checkpoint.text == body


@pytest.mark.parametrize(
    "size_line",
    ["01", "+1", "-1", " 1", "1 ", "1_000", "\u0661", "0x10", "", str(1 << 64), "9" * 30],
)
def test_malformed_size_rejected(size_line: str) -> None:
    body = f"{ORIGIN}\n{size_line}\n{base64.b64encode(ROOT).decode()}\n"
    with pytest.raises(MalformedCheckpointError, match="size"):
        open_checkpoint(sign_note(body, [SIGNER]), [VERIFIER])


@pytest.mark.parametrize(
    "root_line",
    [
        base64.b64encode(ROOT[:31]).decode(),
        base64.b64encode(ROOT + b"\x00").decode(),
        base64.b64encode(ROOT).decode().rstrip("="),
        ROOT.hex(),
        base64.urlsafe_b64encode(b"\xff" * 32).decode(),
        base64.b64encode(ROOT).decode()[:-2] + "1=",  # non-canonical trailing bits
        "",
    ],
)
def test_malformed_root_rejected(root_line: str) -> None:
    body = f"{ORIGIN}\n7\n{root_line}\n"
    with pytest.raises(MalformedCheckpointError, match="root"):
        open_checkpoint(sign_note(body, [SIGNER]), [VERIFIER])


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n7\n",
        f"\n7\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n7\n{base64.b64encode(ROOT).decode()}\n\next\n",
    ],
    ids=["two lines", "empty origin", "empty extension line"],
)
def test_malformed_checkpoint_body_rejected(body: str) -> None:
    with pytest.raises(MalformedCheckpointError):
        open_checkpoint(sign_note(body, [SIGNER]), [VERIFIER], origin=ORIGIN)


def test_parse_checkpoint_direct_errors() -> None:
    good = format_checkpoint(ORIGIN, 7, ROOT)
    assert parse_checkpoint(good) == Checkpoint(ORIGIN, 7, ROOT)
    with pytest.raises(MalformedCheckpointError, match="newline"):
        parse_checkpoint(good[:-1])
    with pytest.raises(MalformedCheckpointError, match="control"):
        parse_checkpoint(good.replace("\n", "\r\n"))


def _signed() -> str:
    return sign_checkpoint(ORIGIN, 7, ROOT, SIGNER)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda n: n.replace("\n\n", "\n"), "blank line"),
        (lambda n: n[:-1], "newline"),
        (lambda n: n + "\n", "signature line"),
        (lambda n: n.split("\n\n")[0] + "\n\n", "no signature lines"),
        (lambda n: n.replace("\u2014 ", "- "), "em dash"),
        (lambda n: n.replace("\u2014 ", "\u2013 "), "em dash"),
        (lambda n: n.replace("\u2014 ", "\u2014"), "em dash"),
        (lambda n: n.replace(f"\u2014 {ORIGIN} ", f"\u2014 {ORIGIN}  "), "key name"),
        (lambda n: n.replace(f"\u2014 {ORIGIN} ", f"\u2014 a+b {ORIGIN} "), "signature line"),
        (lambda n: n.replace(f"\u2014 {ORIGIN} ", "\u2014 a+b "), "invalid key name"),
        (lambda n: n[:-3] + "!!\n", "base64"),
        (lambda n: n[:-2] + "\n", "base64"),
        (lambda n: n.rsplit(" ", 1)[0] + " AAAA\n", "too short"),
        (lambda n: n.replace("\n", "\r\n"), "control character"),
        (lambda n: n.replace(ORIGIN, ORIGIN + "\x00", 1), "control character"),
        (lambda n: n.replace(ORIGIN, ORIGIN + "\ud800", 1), "UTF-8"),
        (lambda n: n + n.split("\n\n")[1] * MAX_SIGNATURES, "more than"),
        (lambda n: n + "x" * (1 << 20), "larger"),
    ],
)
def test_malformed_notes_rejected_with_clear_errors(mutate: Any, message: str) -> None:
    with pytest.raises(MalformedNoteError, match=message):
        open_checkpoint(mutate(_signed()), [VERIFIER])


def test_up_to_the_signature_limit_is_accepted() -> None:
    note = sign_note(format_checkpoint(ORIGIN, 7, ROOT), [SIGNER] * MAX_SIGNATURES)
    assert open_checkpoint(note, [VERIFIER]).size == 7


def test_all_errors_are_verification_errors() -> None:
    for error in (
        MalformedNoteError,
        UnverifiedNoteError,
        InvalidSignatureError,
        MalformedCheckpointError,
        OriginMismatchError,
    ):
        assert issubclass(error, NoteError)
        assert issubclass(error, VerificationError)
        assert issubclass(error, ValueError)


def test_ambiguous_trusted_keys_rejected() -> None:
    # Two different keys under one name and key ID cannot be told apart.
    impostor = NoteVerifier(ORIGIN, OTHER.public_key)
    object.__setattr__(impostor, "key_id", VERIFIER.key_id)
    with pytest.raises(KeyFormatError, match="ambiguous"):
        open_checkpoint(sign_checkpoint(ORIGIN, 7, ROOT, SIGNER), [VERIFIER, impostor])
    # The same key listed twice is fine.
    assert open_checkpoint(sign_checkpoint(ORIGIN, 7, ROOT, SIGNER), [VERIFIER, VERIFIER])


@pytest.mark.parametrize(
    ("origin", "size", "root"),
    [
        ("", 1, ROOT),
        ("has space", 1, ROOT),
        ("has+plus", 1, ROOT),
        ("has\nnewline", 1, ROOT),
        (ORIGIN, -1, ROOT),
        (ORIGIN, 1 << 64, ROOT),
        (ORIGIN, True, ROOT),
        (ORIGIN, 1, ROOT[:31]),
    ],
)
def test_sign_checkpoint_validates_its_input(origin: str, size: int, root: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        sign_checkpoint(origin, size, root, SIGNER)


def test_sign_note_validates_its_input() -> None:
    with pytest.raises(ValueError, match="newline"):
        sign_note("no newline", [SIGNER])
    with pytest.raises(ValueError, match="newline"):
        sign_note("", [SIGNER])
    with pytest.raises(ValueError, match="signer"):
        sign_note("text\n", [])
    with pytest.raises(ValueError, match="control"):
        sign_note("a\tb\n", [SIGNER])


def test_key_names_validated() -> None:
    for name in ("", "a b", "a+b", "a\u00a0b", "a\tb"):
        with pytest.raises(KeyFormatError):
            NoteSigner.generate(name)
    with pytest.raises(KeyFormatError):
        NoteSigner.from_seed("ok", b"short")
    with pytest.raises(KeyFormatError):
        NoteVerifier("ok", b"\x00" * 31)
