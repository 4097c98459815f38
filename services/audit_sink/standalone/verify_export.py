#!/usr/bin/env python3
"""Verify an audit-sink export without the audit sink: Python 3.11+ and ``cryptography`` only.

Usage::

    python3 -I verify_export.py EXPORT_DIR --vkey 'origin+1a2b3c4d+AbCd...' \\
        [--trusted-checkpoint FILE ...] [--json]

``--vkey`` is the log's public key as published by its operator; without it the key in
``EXPORT_DIR/log.vkey`` is used, which only proves the export is self-consistent. Exit
status: 0 intact, 1 a problem was found (the first bad entry is printed first), 2 the
export or arguments cannot be read.

What is checked (docs/audit-trail.md describes the formats):

* ``leaves.bin``: records ``uint64 BE index || uint32 BE length || leaf``. Indices run
  0, 1, 2, ...; each leaf's header (88 bytes: version 1, type, index, prev, payload digest,
  partition, offset, topic length; then the topic and a canonical JSON body) names its own
  index; ``prev`` is the RFC 6962 leaf hash ``SHA-256(0x00 || leaf)`` of the entry before;
  record entries' offsets strictly increase per (topic, partition);
* ``payloads.bin`` (if present): records ``uint64 BE index || uint32 BE length || sealed``;
  each hashes (SHA-256) to the digest in its leaf; a sealed entry without its payload must
  be listed by a later erasure entry (reported as erased), else it is missing;
* erasure entries list earlier, sealed, not yet erased entries in increasing order;
* ``checkpoints/<size>.note`` and every ``--trusted-checkpoint``: C2SP signed notes with an
  Ed25519 signature by the key, whose checkpoint (origin, size, base64 root) has the key's
  name as origin and the root of the RFC 6962 Merkle tree over the first ``size`` leaves.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

HEADER = struct.Struct(">BBQ32s32siqH")
RECORD_HEADER = struct.Struct(">QI")
ZERO = bytes(32)
RECORD, ANOMALY, ERASURE = 1, 2, 3
EXIT_OK, EXIT_PROBLEM, EXIT_UNREADABLE = 0, 1, 2
MAX_SHOWN = 20


class ExportError(Exception):
    """The export or an argument cannot be read."""


def b64(text: str) -> bytes | None:
    """Canonical padded standard base64, else None."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == text else None


@dataclass(frozen=True)
class Vkey:
    """A signed-note Ed25519 verifier key."""

    name: str
    key_id: bytes
    key: Ed25519PublicKey


def parse_vkey(text: str) -> Vkey:
    """Parse ``name+hexid+base64(0x01 || key)`` and check the key ID."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise ExportError("malformed vkey")
    name, key_id_hex, material_b64 = parts
    material = b64(material_b64)
    if material is None or len(material) != 33 or material[0] != 1:
        raise ExportError("vkey is not an Ed25519 key")
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + material).digest()
    if digest[:4].hex() != key_id_hex:
        raise ExportError("vkey key ID does not match its name and key")
    return Vkey(name, digest[:4], Ed25519PublicKey.from_public_bytes(material[1:]))


def open_checkpoint(note: str, vkey: Vkey) -> tuple[int, bytes]:
    """Verify a signed checkpoint note; return its (size, root). ValueError if it fails."""
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise ValueError("not a signed note")
    text, signatures = note[: split + 1], note[split + 2 : -1].split("\n")
    verified = False
    for line in signatures:
        if not line.startswith("\u2014 "):
            raise ValueError("malformed signature line")
        name, _, blob_b64 = line[2:].partition(" ")
        blob = b64(blob_b64)
        if blob is None or len(blob) < 5:
            raise ValueError("malformed signature line")
        if name != vkey.name or blob[:4] != vkey.key_id:
            continue  # a signature by another key: ignored
        try:
            vkey.key.verify(blob[4:], text.encode("utf-8"))
        except InvalidSignature:
            raise ValueError("a signature by the pinned key does not verify") from None
        verified = True
    if not verified:
        raise ValueError("not signed by the pinned key")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or lines[0] != vkey.name:
        raise ValueError("not a checkpoint of this log (origin)")
    if not re.fullmatch(r"0|[1-9][0-9]{0,19}", lines[1]):
        raise ValueError("malformed tree size")
    root = b64(lines[2])
    if root is None or len(root) != 32:
        raise ValueError("malformed root hash")
    return int(lines[1]), root


class Tree:
    """RFC 6962 Merkle tree kept as its compact range (one root per set bit of the size)."""

    def __init__(self) -> None:
        self.size = 0
        self.peaks: list[bytes] = []

    def append(self, leaf_hash: bytes) -> None:
        h, n = leaf_hash, self.size
        while n & 1:
            h = hashlib.sha256(b"\x01" + self.peaks.pop() + h).digest()
            n >>= 1
        self.peaks.append(h)
        self.size += 1

    def root(self) -> bytes:
        if not self.peaks:
            return hashlib.sha256(b"").digest()
        h = self.peaks[-1]
        for left in reversed(self.peaks[:-1]):
            h = hashlib.sha256(b"\x01" + left + h).digest()
        return h


def records(path: Path) -> Iterator[tuple[int, bytes]]:
    """The (index, bytes) records of a leaves.bin or payloads.bin file."""
    with path.open("rb") as handle:
        while header := handle.read(RECORD_HEADER.size):
            if len(header) != RECORD_HEADER.size:
                raise ExportError(f"{path.name} ends in a truncated record")
            index, length = RECORD_HEADER.unpack(header)
            data = handle.read(length)
            if len(data) != length:
                raise ExportError(f"{path.name} ends in a truncated record")
            yield index, data


@dataclass
class Verification:
    """The state and findings of one run."""

    problems: list[tuple[int, str]] = field(default_factory=list)
    bounds: list[tuple[int, int, str]] = field(default_factory=list)
    broken: list[int] = field(default_factory=list)
    misplaced: set[int] = field(default_factory=set)
    sealed: dict[int, bytes] = field(default_factory=dict)
    erased_by: dict[int, int] = field(default_factory=dict)
    erased_count: int = 0

    def problem(self, index: int, message: str) -> None:
        self.problems.append((index, message))

    def bound(self, start: int, end: int, message: str) -> None:
        """A root mismatch: the first bad entry is somewhere in [start, end)."""
        self.bounds.append((start, end, message))

    def ordered(self) -> list[tuple[int, str]]:
        """Problems by index; a root mismatch explained by a precise problem before its end
        comes after it (the precise one names the first bad entry)."""
        earliest = min((i for i, _ in self.problems), default=None)
        keyed = [((i, 0), i, m) for i, m in self.problems]
        for start, end, message in self.bounds:
            explained = earliest is not None and earliest < end
            keyed.append(((end, 2) if explained else (start, 0), start, message))
        return [(i, m) for _, i, m in sorted(keyed)]


def check_erasure(v: Verification, index: int, leaf: bytes, body_start: int) -> None:
    try:
        body: Any = json.loads(leaf[body_start:].decode("ascii"))
        erased = body["erased"]
        ok = isinstance(erased, list) and all(type(i) is int for i in erased)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        v.problem(index, f"erasure entry {index}: malformed body")
        return
    previous = -1
    for target in erased:
        if target <= previous or target >= index:
            v.problem(index, f"erasure entry {index}: indices are not increasing earlier ones")
            return
        if target not in v.sealed:
            v.problem(index, f"erasure entry {index}: entry {target} has no payload")
            return
        if target in v.erased_by:
            v.problem(index, f"erasure entry {index}: entry {target} was already erased")
            return
        previous = target
    for target in erased:
        v.erased_by[target] = index


def verify_leaves(v: Verification, path: Path, targets: dict[int, list[tuple[bytes, str]]]) -> int:
    """Check every leaf; compare the tree's root at each target size. Return the size."""
    tree = Tree()
    prev = ZERO
    expected = 0
    last_offset: dict[tuple[bytes, int], int] = {}
    last_good = 0
    for index, leaf in records(path):
        if index != expected:
            v.problem(expected, f"entries [{expected}, {index}) are missing")
        expected = index + 1
        h = hashlib.sha256(b"\x00" + leaf).digest()
        if len(leaf) < HEADER.size:
            v.problem(index, f"entry {index}: malformed leaf")
        else:
            version, kind, seq, link, digest, partition, offset, topic_len = HEADER.unpack_from(
                leaf
            )
            if version != 1 or kind not in (RECORD, ANOMALY, ERASURE):
                v.problem(index, f"entry {index}: unknown leaf version or type")
            else:
                if seq != index:
                    v.misplaced.add(index)
                    v.problem(min(index, seq), f"entry stored at {index} is entry {seq}")
                if link != prev:
                    v.broken.append(index)
                if digest != ZERO:
                    v.sealed[index] = digest
                if kind == RECORD:
                    key = (leaf[HEADER.size : HEADER.size + topic_len], partition)
                    if topic_len == 0:
                        v.problem(index, f"entry {index}: a record without a source")
                    elif offset <= last_offset.get(key, -1):
                        v.problem(index, f"entry {index}: offset {offset} out of order")
                    else:
                        last_offset[key] = offset
                elif kind == ERASURE:
                    check_erasure(v, index, leaf, HEADER.size + topic_len)
        prev = h
        tree.append(h)
        at_size = targets.pop(tree.size, [])
        if at_size:
            root = tree.root()
            mismatched = [what for expected_root, what in at_size if expected_root != root]
            for what in mismatched:
                v.bound(
                    last_good,
                    tree.size,
                    f"the first {tree.size} entries do not hash to the root of the {what} "
                    f"{tree.size}: divergence in [{last_good}, {tree.size})",
                )
            if not mismatched:
                last_good = tree.size
    for size, found in sorted(targets.items()):
        for _, what in found:
            v.problem(
                expected, f"the log ends at {expected} entries but the {what} {size} is larger"
            )
    return tree.size


def attribute_chain_breaks(v: Verification) -> None:
    """A lone break before entry j blames j - 1 (edited); two in a row blame the middle one."""
    broken = set(v.broken)
    consumed: set[int] = set()
    for j in sorted(broken):
        if j in consumed or j in v.misplaced:
            continue
        if j + 1 in broken:
            consumed.add(j + 1)
            v.problem(j, f"entry {j} is not the entry its neighbours were chained to")
        else:
            v.problem(j - 1, f"entry {j - 1} is not the entry its successor was chained to")


def verify_payloads(v: Verification, path: Path | None) -> None:
    seen: set[int] = set()
    if path is not None:
        for index, sealed in records(path):
            seen.add(index)
            digest = v.sealed.get(index)
            if digest is None:
                v.problem(index, f"a payload is stored for entry {index}, which has no payload")
            elif hashlib.sha256(sealed).digest() != digest:
                v.problem(index, f"entry {index}: the payload does not match its digest")
    for index in sorted(v.sealed):
        if index in v.erased_by:
            v.erased_count += 1
        elif path is not None and index not in seen:
            v.problem(index, f"entry {index}: payload missing and not erased")


def load_targets(
    directory: Path, trusted: list[Path], vkey: Vkey, v: Verification
) -> dict[int, list[tuple[bytes, str]]]:
    targets: dict[int, list[tuple[bytes, str]]] = {}
    notes = sorted((directory / "checkpoints").glob("*.note"), key=lambda p: int(p.stem))
    for path in notes:
        try:
            size, root = open_checkpoint(path.read_text("utf-8"), vkey)
        except (ValueError, UnicodeDecodeError) as exc:
            v.problem(int(path.stem), f"checkpoint {path.stem}: {exc}")
            continue
        if size != int(path.stem):
            v.problem(int(path.stem), f"checkpoint file {path.name} holds size {size}")
        elif size:
            targets.setdefault(size, []).append((root, "checkpoint"))
    for path in trusted:
        try:
            size, root = open_checkpoint(path.read_text("utf-8"), vkey)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ExportError(f"trusted checkpoint {path}: {exc}") from None
        if size:
            targets.setdefault(size, []).append((root, "trusted checkpoint"))
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify an audit-sink export offline.")
    parser.add_argument("export", type=Path)
    parser.add_argument("--vkey", help="the log's published verifier key")
    parser.add_argument("--trusted-checkpoint", type=Path, action="append", default=[])
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    args = parser.parse_args(argv)
    directory: Path = args.export
    try:
        if args.vkey is None:
            print("warning: no --vkey; trusting the key shipped in the export", file=sys.stderr)
            vkey_text = (directory / "log.vkey").read_text("utf-8")
        else:
            vkey_text = args.vkey
        vkey = parse_vkey(vkey_text)
        v = Verification()
        targets = load_targets(directory, args.trusted_checkpoint, vkey, v)
        size = verify_leaves(v, directory / "leaves.bin", targets)
        attribute_chain_breaks(v)
        payloads = directory / "payloads.bin"
        verify_payloads(v, payloads if payloads.exists() else None)
    except (OSError, ExportError) as exc:
        print(f"cannot verify: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    problems = v.ordered()
    if args.json:
        report = {
            "ok": not problems,
            "size": size,
            "erased": v.erased_count,
            "problems": [{"index": i, "message": m} for i, m in problems],
        }
        print(json.dumps(report, sort_keys=True))
    elif problems:
        print(f"FAIL: first bad entry {problems[0][0]}: {problems[0][1]}")
        for index, message in problems[1:MAX_SHOWN]:
            print(f"  also at {index}: {message}")
    else:
        print(f"OK: {size} entries intact, {v.erased_count} erased")
    return EXIT_PROBLEM if problems else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
