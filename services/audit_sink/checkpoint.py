"""C2SP tlog-checkpoints signed as C2SP signed notes with Ed25519.

Pure: no I/O; keys and texts are passed in and returned.

* **Signed note** (``c2sp.org/signed-note``): a UTF-8 text ending in a newline, a blank line,
  then one or more lines ``— <key name> <base64(4-byte key ID || signature)>`` (em dash
  U+2014, space). No ASCII control character but newline is allowed anywhere. The text is
  separated from the signatures by the *last* blank line. For Ed25519 (signature type
  ``0x01``) the key ID is ``SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]`` read
  big-endian, and the signature is RFC 8032 Ed25519 over the text's UTF-8 bytes (final
  newline included). Verifier keys ("vkeys") are written
  ``<name>+<8 lowercase hex key ID>+<base64(0x01 || public key)>``.
* **Opening a note** ignores signatures whose (name, key ID) pair matches no trusted key,
  verifies every one that does match, rejects the whole note if any of those fails, and
  rejects it unless at least one verified.
* **Checkpoint** (``c2sp.org/tlog-checkpoint``): the note text is the origin line, the tree
  size in ASCII decimal without leading zeros, and the base64 root hash, each followed by a
  newline; further non-empty extension lines are accepted when parsing but never produced.
  The signed text is read only after a trusted signature has verified.

Every failure to open a note or checkpoint raises a subclass of :class:`NoteError` (itself a
:class:`~audit_sink.merkle.VerificationError`) whose message says what is wrong. Bad key
material given by the caller (vkeys, seeds, key names) raises :class:`KeyFormatError`.

The signed-note spec defines no text encoding for *signer* (private) keys, so none is
offered: a :class:`NoteSigner` is built from an ``Ed25519PrivateKey`` or a 32-byte seed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit_sink._encoding import decode_base64, encode_base64, parse_uint64
from audit_sink.merkle import HASH_SIZE, MAX_TREE_SIZE, VerificationError

__all__ = [
    "ED25519_SIGNATURE_TYPE",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Checkpoint",
    "InvalidSignatureError",
    "KeyFormatError",
    "MalformedCheckpointError",
    "MalformedNoteError",
    "Note",
    "NoteError",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "OriginMismatchError",
    "UnverifiedNoteError",
    "VerifiedNote",
    "format_checkpoint",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_checkpoint",
    "parse_note",
    "sign_checkpoint",
    "sign_note",
]

ED25519_SIGNATURE_TYPE: Final = 0x01
"""Signature type identifier byte of Ed25519 in the signed-note spec."""

MAX_SIGNATURES: Final = 100
"""Most signature lines accepted in one note (the spec requires accepting at least 16)."""

MAX_NOTE_BYTES: Final = 1 << 20
"""Largest note accepted, in UTF-8 bytes."""

_SIGNATURE_PREFIX: Final = "\u2014 "  # em dash, space
_ED25519_SIGNATURE_SIZE: Final = 64
_ED25519_KEY_SIZE: Final = 32
_CONTROL: Final = re.compile(r"[\x00-\x09\x0b-\x1f]")
_KEY_ID_HEX: Final = re.compile(r"[0-9a-f]{8}")


class NoteError(VerificationError):
    """A signed note or checkpoint was rejected."""


class MalformedNoteError(NoteError):
    """The text is not a well-formed signed note."""


class UnverifiedNoteError(NoteError):
    """No signature of the note is from a trusted key."""


class InvalidSignatureError(NoteError):
    """A signature that names a trusted key does not verify."""


class MalformedCheckpointError(NoteError):
    """The note text is not a well-formed tlog checkpoint."""


class OriginMismatchError(NoteError):
    """The checkpoint's origin is not the expected one."""


class KeyFormatError(ValueError):
    """Key material or a key name given by the caller is invalid."""


def _valid_key_name(name: str) -> bool:
    return bool(name) and not any(c == "+" or c.isspace() or c < " " for c in name)


def _check_key_name(name: str) -> None:
    if not isinstance(name, str) or not _valid_key_name(name):
        raise KeyFormatError(
            f"invalid key name {name!r}: it must be non-empty, without spaces, '+' or "
            "control characters"
        )


def key_id(name: str, public_key: bytes, signature_type: int = ED25519_SIGNATURE_TYPE) -> int:
    """Return the signed-note key ID ``SHA-256(name || 0x0A || type || public_key)[:4]``.

    The four bytes are read as a big-endian uint32, as written in vkeys and signatures.
    """
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([signature_type]) + public_key
    ).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted Ed25519 note key: its name, raw 32-byte public key and derived key ID."""

    name: str
    public_key: bytes
    key_id: int = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Validate the name and key and derive the key ID (``KeyFormatError`` if invalid)."""
        _check_key_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != _ED25519_KEY_SIZE:
            raise KeyFormatError(f"an Ed25519 public key is {_ED25519_KEY_SIZE} bytes")
        try:
            loaded = Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError as exc:
            raise KeyFormatError(f"invalid Ed25519 public key: {exc}") from exc
        object.__setattr__(self, "key_id", key_id(self.name, self.public_key))
        object.__setattr__(self, "_key", loaded)

    def __repr__(self) -> str:
        """Show the vkey."""
        return f"NoteVerifier.from_vkey({self.vkey!r})"

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey) -> NoteVerifier:
        """Return the verifier for ``public_key`` under ``name``."""
        raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(name, raw)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse a verifier key ``<name>+<hex key ID>+<base64(0x01 || public key)>``.

        Raises :class:`KeyFormatError` if the text is malformed, the signature type is not
        Ed25519 (``0x01``), the key is not 32 bytes, or the key ID does not match the one
        derived from the name and key.
        """
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise KeyFormatError("a vkey has three '+'-separated parts: name, key ID, key")
        name, id_hex, key_b64 = parts
        _check_key_name(name)
        if _KEY_ID_HEX.fullmatch(id_hex) is None:
            raise KeyFormatError(f"vkey key ID {id_hex!r} is not 8 lowercase hex digits")
        material = decode_base64(key_b64)
        if material is None or not material:
            raise KeyFormatError("vkey key material is not canonical base64")
        if material[0] != ED25519_SIGNATURE_TYPE:
            raise KeyFormatError(
                f"unsupported vkey signature type 0x{material[0]:02x} (only Ed25519, 0x01)"
            )
        verifier = cls(name, material[1:])
        if verifier.key_id != int(id_hex, 16):
            raise KeyFormatError(
                f"vkey key ID {id_hex} does not match its name and key "
                f"(expected {verifier.key_id:08x})"
            )
        return verifier

    @property
    def vkey(self) -> str:
        """The verifier key text ``<name>+<hex key ID>+<base64(0x01 || public key)>``."""
        material = bytes([ED25519_SIGNATURE_TYPE]) + self.public_key
        return f"{self.name}+{self.key_id:08x}+{encode_base64(material)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` is this key's 64-byte Ed25519 signature of ``message``."""
        if len(signature) != _ED25519_SIGNATURE_SIZE:
            return False
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class NoteSigner:
    """An Ed25519 note-signing key with its key name."""

    __slots__ = ("_key", "key_id", "name", "public_key")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        """Wrap ``private_key``, signing under ``name`` (``KeyFormatError`` if the name is bad)."""
        _check_key_name(name)
        self.name = name
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(name, self.public_key)

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        """Return a signer with a freshly generated key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> NoteSigner:
        """Return the signer whose RFC 8032 private key is the 32-byte ``seed``."""
        if len(seed) != _ED25519_KEY_SIZE:
            raise KeyFormatError(f"an Ed25519 seed is {_ED25519_KEY_SIZE} bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    def verifier(self) -> NoteVerifier:
        """Return the matching :class:`NoteVerifier` (publish its ``vkey``)."""
        return NoteVerifier(self.name, self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        """Show the name and key ID, never the key."""
        return f"NoteSigner({self.name!r}, key_id={self.key_id:08x})"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID and the signature bytes after the key ID."""

    name: str
    key_id: int
    signature: bytes

    def line(self) -> str:
        """Return the signature line, without its newline."""
        blob = self.key_id.to_bytes(4, "big") + self.signature
        return f"{_SIGNATURE_PREFIX}{self.name} {encode_base64(blob)}"


@dataclass(frozen=True)
class Note:
    """A syntactically valid signed note whose signatures are *not* verified."""

    text: str
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True)
class VerifiedNote:
    """A note opened with trusted keys.

    ``verified_by`` lists the trusted keys whose signatures verified (at least one);
    ``ignored`` the signatures from keys not trusted, which were not checked.
    """

    text: str
    verified_by: tuple[NoteVerifier, ...]
    ignored: tuple[NoteSignature, ...]


def _to_text(note: str | bytes, what: str) -> tuple[str, bytes]:
    if isinstance(note, bytes):
        raw = note
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNoteError(f"{what} is not valid UTF-8: {exc}") from exc
    else:
        text = note
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedNoteError(f"{what} is not valid UTF-8: {exc}") from exc
    if len(raw) > MAX_NOTE_BYTES:
        raise MalformedNoteError(f"{what} is larger than {MAX_NOTE_BYTES} bytes")
    bad = _CONTROL.search(text)
    if bad is not None:
        raise MalformedNoteError(
            f"{what} contains the control character U+{ord(bad.group()):04X} "
            f"at offset {bad.start()}"
        )
    return text, raw


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    if not line.startswith(_SIGNATURE_PREFIX):
        raise MalformedNoteError(
            f"signature line {number} does not start with an em dash (U+2014) and a space"
        )
    parts = line[len(_SIGNATURE_PREFIX) :].split(" ")
    if len(parts) != 2:
        raise MalformedNoteError(
            f"signature line {number} is not '\u2014 <key name> <base64 signature>'"
        )
    name, blob_b64 = parts
    if not _valid_key_name(name):
        raise MalformedNoteError(f"signature line {number} has an invalid key name {name!r}")
    blob = decode_base64(blob_b64)
    if blob is None:
        raise MalformedNoteError(f"signature line {number} is not canonical base64")
    if len(blob) < 5:
        raise MalformedNoteError(
            f"signature line {number} is too short for a key ID and a signature"
        )
    return NoteSignature(name, int.from_bytes(blob[:4], "big"), blob[4:])


def parse_note(note: str | bytes) -> Note:
    """Split a signed note into its text and signature lines, without verifying anything.

    Raises :class:`MalformedNoteError` unless the note is valid UTF-8 without control
    characters other than newline, at most :data:`MAX_NOTE_BYTES` long, and is a non-empty
    text ending in a newline, a blank line, and 1 to :data:`MAX_SIGNATURES` well-formed
    signature lines each ending in a newline. The text is what precedes the last blank line.
    """
    text, _ = _to_text(note, "note")
    split = text.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("note has no blank line separating its text from its signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise MalformedNoteError("note has no signature lines")
    if not block.endswith("\n"):
        raise MalformedNoteError("note does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"note has more than {MAX_SIGNATURES} signatures")
    signatures = tuple(_parse_signature_line(line, i + 1) for i, line in enumerate(lines))
    return Note(body, signatures)


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """Return the signed note of ``text`` with one signature line per signer, in order.

    ``text`` must be non-empty, end with a newline and contain no control character other
    than newline (``ValueError`` otherwise); at least one signer is required.
    """
    if not signers:
        raise ValueError("a note needs at least one signer")
    if len(signers) > MAX_SIGNATURES:
        raise ValueError(f"a note carries at most {MAX_SIGNATURES} signatures")
    if not text.endswith("\n"):
        raise ValueError("a note text must be non-empty and end with a newline")
    try:
        _, raw = _to_text(text, "note text")
    except MalformedNoteError as exc:
        raise ValueError(str(exc)) from exc
    lines = [NoteSignature(s.name, s.key_id, s.sign(raw)).line() + "\n" for s in signers]
    return text + "\n" + "".join(lines)


def _index_verifiers(
    verifiers: Iterable[NoteVerifier],
) -> dict[tuple[str, int], NoteVerifier]:
    known: dict[tuple[str, int], NoteVerifier] = {}
    for v in verifiers:
        if not isinstance(v, NoteVerifier):
            raise TypeError(f"trusted keys must be NoteVerifier, got {type(v).__name__}")
        slot = (v.name, v.key_id)
        other = known.setdefault(slot, v)
        if other.public_key != v.public_key:
            raise KeyFormatError(
                f"ambiguous trusted keys: two different keys are named {v.name}+{v.key_id:08x}"
            )
    return known


def open_note(note: str | bytes, verifiers: Iterable[NoteVerifier]) -> VerifiedNote:
    """Verify a signed note against trusted keys and return its text.

    Signatures whose (key name, key ID) matches no trusted key are ignored. Every signature
    that matches one is verified. Raises :class:`MalformedNoteError` (see
    :func:`parse_note`), :class:`InvalidSignatureError` if a trusted key's signature fails,
    or :class:`UnverifiedNoteError` if no trusted key signed. Raises
    :class:`KeyFormatError` if two different trusted keys share a name and key ID.
    """
    parsed = parse_note(note)
    known = _index_verifiers(verifiers)
    message = parsed.text.encode("utf-8")
    verified: dict[tuple[str, int], NoteVerifier] = {}
    ignored: list[NoteSignature] = []
    for sig in parsed.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            ignored.append(sig)
            continue
        if not verifier.verify(message, sig.signature):
            raise InvalidSignatureError(
                f"the signature by trusted key {sig.name}+{sig.key_id:08x} does not verify"
            )
        verified[(sig.name, sig.key_id)] = verifier
    if not verified:
        names = ", ".join(f"{s.name}+{s.key_id:08x}" for s in ignored)
        raise UnverifiedNoteError(
            f"note has no signature from a trusted key (ignored signatures: {names})"
        )
    return VerifiedNote(parsed.text, tuple(verified.values()), tuple(ignored))


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint: log origin, tree size, root hash, and any extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The checkpoint's note text (extension lines included)."""
        lines = [self.origin, str(self.size), encode_base64(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)


def format_checkpoint(origin: str, size: int, root: bytes) -> str:
    """Return the checkpoint note text ``origin\\nsize\\nbase64(root)\\n`` (no extensions).

    The origin must be non-empty, without spaces, '+' or control characters (the spec's
    recommendation, enforced for what we produce); ``0 <= size < 2**64``; ``root`` 32
    bytes. ``ValueError`` otherwise.
    """
    if not isinstance(origin, str) or not _valid_key_name(origin):
        raise ValueError(
            f"invalid origin {origin!r}: it must be non-empty, without spaces, '+' or "
            "control characters"
        )
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < MAX_TREE_SIZE:
        raise ValueError(f"tree size must be an int in [0, 2**64), got {size!r}")
    if not isinstance(root, bytes) or len(root) != HASH_SIZE:
        raise ValueError(f"root hash must be {HASH_SIZE} bytes")
    return Checkpoint(origin, size, root).text


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint note text (origin, size, root, then optional extension lines).

    Raises :class:`MalformedCheckpointError` unless the text ends in a newline and has at
    least three lines, a non-empty origin, a decimal size without leading zeros below
    ``2**64``, a root that is canonical base64 of 32 bytes, and only non-empty extension
    lines. Control characters other than newline are rejected.
    """
    if _CONTROL.search(text) is not None:
        raise MalformedCheckpointError("checkpoint contains a control character")
    if not text.endswith("\n"):
        raise MalformedCheckpointError("checkpoint text does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpointError(
            f"checkpoint has {len(lines)} line(s); it needs origin, size and root hash"
        )
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise MalformedCheckpointError("checkpoint origin line is empty")
    size = parse_uint64(size_text)
    if size is None:
        raise MalformedCheckpointError(
            f"checkpoint size {size_text!r} is not a decimal without leading zeros below 2**64"
        )
    root = decode_base64(root_text)
    if root is None or len(root) != HASH_SIZE:
        raise MalformedCheckpointError(
            f"checkpoint root {root_text!r} is not canonical base64 of a {HASH_SIZE}-byte hash"
        )
    if any(not line for line in extensions):
        raise MalformedCheckpointError("checkpoint has an empty extension line")
    return Checkpoint(origin, size, root, tuple(extensions))


def sign_checkpoint(origin: str, size: int, root: bytes, signer: NoteSigner) -> str:
    """Return the signed checkpoint note for ``(origin, size, root)``, signed by ``signer``.

    Validates as :func:`format_checkpoint` (``ValueError``). The signer's key name should
    equal the origin (c2sp.org/tlog-checkpoint); :func:`open_checkpoint` without an explicit
    origin requires it. Never sign a checkpoint inconsistent with one already signed: that
    is the caller's duty.
    """
    return sign_note(format_checkpoint(origin, size, root), [signer])


def open_checkpoint(
    note_text: str | bytes,
    trusted_verifiers: Iterable[NoteVerifier],
    *,
    origin: str | None = None,
) -> Checkpoint:
    """Verify a signed checkpoint and return its origin, size and root.

    The note must be signed by at least one trusted key, every signature by a trusted key
    must verify, and unknown keys' signatures are ignored (see :func:`open_note`). Only then
    is the text parsed (see :func:`parse_checkpoint`). Its origin must equal ``origin`` if
    given, else the key name of a trusted key whose signature verified.

    Raises :class:`MalformedNoteError`, :class:`UnverifiedNoteError`,
    :class:`InvalidSignatureError`, :class:`MalformedCheckpointError` or
    :class:`OriginMismatchError` (all :class:`NoteError`).
    """
    verified = open_note(note_text, trusted_verifiers)
    checkpoint = parse_checkpoint(verified.text)
    if origin is not None:
        if checkpoint.origin != origin:
            raise OriginMismatchError(
                f"checkpoint origin {checkpoint.origin!r} is not the expected {origin!r}"
            )
    elif all(v.name != checkpoint.origin for v in verified.verified_by):
        signers = ", ".join(repr(v.name) for v in verified.verified_by)
        raise OriginMismatchError(
            f"checkpoint origin {checkpoint.origin!r} matches no key that signed it ({signers})"
        )
    return checkpoint
