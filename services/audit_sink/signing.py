"""The checkpoint signing key file: the 32-byte Ed25519 seed, base64, one line, mode 0600.

The signed-note spec defines no private-key encoding, so this is ours: standard padded
base64 of the RFC 8032 seed followed by a newline. The key's name is the log origin.
:func:`create_signing_key` never overwrites a file; :func:`load_signing_key` refuses a
file that others can read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from audit_sink._encoding import decode_base64, encode_base64
from audit_sink.checkpoint import NoteSigner

__all__ = ["SigningKeyError", "create_signing_key", "load_signing_key"]


class SigningKeyError(RuntimeError):
    """The signing key file is missing, malformed, readable by others, or already exists."""


def create_signing_key(path: Path, origin: str) -> NoteSigner:
    """Create ``path`` (mode 0600, never overwriting) with a fresh key; return its signer."""
    seed = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    signer = NoteSigner.from_seed(origin, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SigningKeyError(f"{path} already exists; not overwriting a signing key") from None
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(encode_base64(seed) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return signer


def load_signing_key(path: Path, origin: str) -> NoteSigner:
    """The signer of the key in ``path``, named ``origin``."""
    try:
        mode = path.stat().st_mode
        text = path.read_text("ascii")
    except FileNotFoundError:
        raise SigningKeyError(f"no signing key at {path} (audit-sink keygen)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"cannot read the signing key {path}: {type(exc).__name__}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(f"{path} is accessible to others; chmod 600 it")
    seed = decode_base64(text.strip())
    if seed is None or len(seed) != 32:
        raise SigningKeyError(f"{path} does not hold a base64 32-byte Ed25519 seed")
    return NoteSigner.from_seed(origin, seed)
