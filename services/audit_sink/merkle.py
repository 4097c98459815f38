"""RFC 6962 / RFC 9162 Merkle tree: hashing, incremental building, proofs and their checks.

Pure functions and small classes, no I/O.

* Hashing (RFC 9162 §2.1.1): a leaf hashes as ``SHA-256(0x00 || leaf)``, an interior node as
  ``SHA-256(0x01 || left || right)`` and the empty tree as ``SHA-256("")``. The tree over
  ``n`` leaves splits at the largest power of two smaller than ``n`` (a left-balanced tree).
* :class:`CompactRange` appends leaf hashes one by one and gives the root of the tree so far,
  keeping only one hash per set bit of the size (``O(log n)`` memory).
* Proof generation (:func:`inclusion_proof`, :func:`consistency_proof`) follows RFC 9162
  §2.1.3.1 and §2.1.4.1. It asks a :data:`SubtreeHash` callable for the hashes of the
  subtrees it needs; :class:`SubtreeHasher` is one that reads leaf hashes by index range
  from any store and caches the (immutable) perfect subtrees at and above a given level, so
  that after warm-up a proof costs ``O(2**cache_level + log n)`` leaf reads, not ``O(n)``.
* Verification (:func:`verify_inclusion`, :func:`verify_consistency`) is the RFC 9162
  §2.1.3.2 and §2.1.4.2 algorithms, step by step. Both return ``None`` on success and raise
  :class:`InvalidProofError` on any failure; they never return a boolean, so a forgotten
  check cannot pass silently. :class:`VerificationError` is the common base of every
  verification failure of the audit trail (Merkle proofs, signed notes, proof bundles).

Indices and sizes are Python ints in ``[0, 2**64)``, as in RFC 9162 (``uint64``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Final

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "CompactRange",
    "InvalidProofError",
    "SubtreeHash",
    "SubtreeHasher",
    "VerificationError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE: Final = 32
"""Size in bytes of every hash of the tree (SHA-256)."""

MAX_TREE_SIZE: Final = 1 << 64
"""Exclusive upper bound of tree sizes and leaf indices (they are uint64 in RFC 9162)."""

_sha256 = hashlib.sha256
_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"
_CHUNK: Final = 65536

EMPTY_ROOT: Final[bytes] = _sha256(b"").digest()
"""Root hash of the empty tree: ``SHA-256("")``."""

SubtreeHash = Callable[[int, int], bytes]
"""``subtree_hash(start, end)`` returns the Merkle tree hash ``MTH(D[start:end])`` of the
leaves with indices ``start <= i < end`` (``start < end``)."""


class VerificationError(ValueError):
    """Base class of every verification failure of the audit trail."""


class InvalidProofError(VerificationError):
    """A Merkle inclusion or consistency proof does not verify (or is malformed)."""


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 6962 leaf hash ``SHA-256(0x00 || data)`` of a leaf's bytes."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 interior node hash ``SHA-256(0x01 || left || right)``."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _check_hash(value: bytes, what: str, error: type[Exception] = ValueError) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise error(f"{what} must be a {HASH_SIZE}-byte hash, got {got}")


def _check_uint(value: int, what: str, error: type[Exception] = ValueError) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= value < MAX_TREE_SIZE:
        raise error(f"{what} {value} is outside [0, 2**64)")


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """Return the Merkle tree hash of the given leaf hashes, in order.

    ``EMPTY_ROOT`` for no leaves. Every leaf hash must be 32 bytes (``ValueError``
    otherwise). Runs in ``O(n)`` time and memory; use :class:`CompactRange` to stream.
    """
    level = list(leaf_hashes)
    for i, h in enumerate(level):
        _check_hash(h, f"leaf hash #{i}")
    if not level:
        return EMPTY_ROOT
    sha = _sha256
    prefix = _NODE_PREFIX
    # Pairing each level and carrying an odd last node up unchanged gives exactly the
    # left-balanced RFC 6962 tree.
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        it = iter(level)
        level = [sha(prefix + a + b).digest() for a, b in zip(it, it, strict=False)]
        if odd is not None:
            level.append(odd)
    return level[0]


class CompactRange:
    """Incremental Merkle tree over leaves ``[0, size)`` that keeps only its compact range.

    The state is one hash per set bit of ``size`` (the roots of the perfect subtrees that
    make up the tree, largest first), so memory is ``O(log n)``; each append costs one
    leaf-hash length check plus, amortised, one node hash. :meth:`root` folds the state in
    ``O(log n)``. The state can be saved (:attr:`size`, :attr:`peaks`) and restored with
    :meth:`from_state`.
    """

    __slots__ = ("_peaks", "_size")

    def __init__(self) -> None:
        """Create the builder of an empty tree."""
        self._peaks: list[bytes] = []
        self._size = 0

    @classmethod
    def from_state(cls, size: int, peaks: Sequence[bytes]) -> CompactRange:
        """Restore a builder from a saved ``size`` and :attr:`peaks`.

        ``peaks`` must hold exactly one 32-byte hash per set bit of ``size``, largest
        subtree first (``ValueError`` otherwise). The hashes are trusted as given.
        """
        _check_uint(size, "tree size")
        if len(peaks) != size.bit_count():
            raise ValueError(
                f"a tree of size {size} has {size.bit_count()} peaks, got {len(peaks)}"
            )
        for i, h in enumerate(peaks):
            _check_hash(h, f"peak #{i}")
        built = cls()
        built._peaks = list(peaks)
        built._size = size
        return built

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def peaks(self) -> tuple[bytes, ...]:
        """Roots of the perfect subtrees covering ``[0, size)``, largest (leftmost) first."""
        return tuple(self._peaks)

    def copy(self) -> CompactRange:
        """Return an independent copy of this builder."""
        other = CompactRange()
        other._peaks = list(self._peaks)
        other._size = self._size
        return other

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf hash (32 bytes; ``ValueError`` otherwise)."""
        if len(leaf_hash) != HASH_SIZE or not isinstance(leaf_hash, bytes):
            _check_hash(leaf_hash, "leaf hash")
        peaks = self._peaks
        h = leaf_hash
        n = self._size
        self._size = n + 1
        while n & 1:
            h = _sha256(_NODE_PREFIX + peaks.pop() + h).digest()
            n >>= 1
        peaks.append(h)

    def append_subtree(self, root: bytes, level: int) -> None:
        """Append a perfect subtree of ``2**level`` leaves, given its root hash.

        The tree's size must be a multiple of ``2**level`` (``ValueError`` otherwise): the
        subtree is then aligned, as in the tree over all the leaves. Used to join trees
        built over aligned index ranges (e.g. by parallel verification).
        """
        _check_hash(root, "subtree root")
        if level < 0 or self._size % (1 << level):
            raise ValueError(f"a tree of size {self._size} cannot take a 2**{level} subtree")
        peaks = self._peaks
        h = root
        n = self._size >> level
        while n & 1:
            h = _sha256(_NODE_PREFIX + peaks.pop() + h).digest()
            n >>= 1
        peaks.append(h)
        self._size += 1 << level

    def extend_range(self, size: int, peaks: Sequence[bytes]) -> None:
        """Append the leaves of another compact range of ``size`` leaves (its ``peaks``),
        built as if from index 0; ``size`` must not exceed the largest power of two that
        divides this tree's size (``ValueError`` otherwise), so that both align."""
        if len(peaks) != size.bit_count():
            raise ValueError(f"a range of size {size} has {size.bit_count()} peaks")
        if self._size and size > self._size & -self._size:
            raise ValueError(f"a range of {size} leaves is not aligned at {self._size}")
        levels = [bit for bit in range(size.bit_length() - 1, -1, -1) if size >> bit & 1]
        for level, peak in zip(levels, peaks, strict=True):
            self.append_subtree(peak, level)

    def append_leaf(self, data: bytes) -> bytes:
        """Append the leaf whose bytes are ``data``; return its leaf hash."""
        h = leaf_hash(data)
        self.append(h)
        return h

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes in order (the fast path for bulk appends).

        Works on chunks of up to 65,536 hashes, hashing each tree level of a chunk in one
        pass. Raises ``ValueError`` at the first hash that is not 32 bytes; the hashes before
        it stay appended and the builder stays consistent.
        """
        it = iter(leaf_hashes)
        while chunk := list(islice(it, _CHUNK)):
            if set(map(len, chunk)) != {HASH_SIZE}:
                bad = next(i for i, h in enumerate(chunk) if len(h) != HASH_SIZE)
                self._merge(chunk[:bad])
                _check_hash(chunk[bad], f"leaf hash #{self._size}")
            self._merge(chunk)

    def _merge(self, chunk: list[bytes]) -> None:
        """Append ``chunk`` (validated leaf hashes; the list is consumed)."""
        count = len(chunk)
        peaks = self._peaks
        if count < 8:
            for h in chunk:
                n = self._size
                while n & 1:
                    h = _sha256(_NODE_PREFIX + peaks.pop() + h).digest()  # noqa: PLW2901
                    n >>= 1
                peaks.append(h)
                self._size += 1
            return
        sha = _sha256
        prefix = _NODE_PREFIX
        new_peaks: list[bytes] = []  # lowest level first
        level = chunk
        position = self._size  # index, at the current level, of the first node of ``level``
        while level:
            if position & 1:
                # The lowest remaining peak is the left sibling of level[0].
                level.insert(0, peaks.pop())
                position -= 1
            if len(level) & 1:
                new_peaks.append(level.pop())
            pairs = iter(level)
            level = [sha(prefix + a + b).digest() for a, b in zip(pairs, pairs, strict=False)]
            position >>= 1
        new_peaks.reverse()
        peaks.extend(new_peaks)
        self._size += count

    def root(self) -> bytes:
        """Return the Merkle tree hash of the leaves appended so far (``EMPTY_ROOT`` if none)."""
        peaks = self._peaks
        if not peaks:
            return EMPTY_ROOT
        h = peaks[-1]
        for left in reversed(peaks[:-1]):
            h = _sha256(_NODE_PREFIX + left + h).digest()
        return h


class SubtreeHasher:
    """A :data:`SubtreeHash` over leaf hashes read by index range, with a subtree cache.

    ``leaf_hashes(start, end)`` must return the leaf hashes of indices ``start <= i < end``
    (exactly ``end - start`` of them, 32 bytes each; ``LookupError`` otherwise), e.g. one
    ``SELECT ... WHERE idx >= ? AND idx < ? ORDER BY idx`` against a store.

    Calling the instance with ``(start, end)`` returns ``MTH(D[start:end])``. A perfect,
    aligned subtree (``2**k`` leaves starting at a multiple of ``2**k``) never changes in an
    append-only log, so those at level ``cache_level`` and above are kept in :attr:`cache`
    (keyed by ``(level, index)``; about ``2 * n / 2**cache_level`` entries once a tree of
    ``n`` leaves has been covered). Lower subtrees are recomputed from at most
    ``2**cache_level`` leaves. The cache may be pre-filled (e.g. from a store) through the
    ``cache`` argument; its entries are trusted.
    """

    __slots__ = ("_leaf_hashes", "cache", "cache_level")

    def __init__(
        self,
        leaf_hashes: Callable[[int, int], Sequence[bytes]],
        *,
        cache_level: int = 8,
        cache: dict[tuple[int, int], bytes] | None = None,
    ) -> None:
        """Wrap ``leaf_hashes``; cache perfect subtrees of ``2**cache_level`` leaves or more."""
        if not 0 <= cache_level <= 63:
            raise ValueError(f"cache_level must be in [0, 63], got {cache_level}")
        self._leaf_hashes = leaf_hashes
        self.cache_level = cache_level
        self.cache: dict[tuple[int, int], bytes] = {} if cache is None else cache

    @classmethod
    def from_sequence(cls, leaf_hashes: Sequence[bytes], *, cache_level: int = 8) -> SubtreeHasher:
        """Return a hasher over an in-memory sequence of leaf hashes."""
        return cls(lambda start, end: leaf_hashes[start:end], cache_level=cache_level)

    def __call__(self, start: int, end: int) -> bytes:
        """Return ``MTH(D[start:end])``; ``EMPTY_ROOT`` when ``start == end``."""
        if not 0 <= start <= end:
            raise ValueError(f"invalid leaf range [{start}, {end})")
        if start == end:
            return EMPTY_ROOT
        return self._mth(start, end)

    def _mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            return self._perfect(level, start >> level)
        mid = start + _split(n)
        return node_hash(self._mth(start, mid), self._mth(mid, end))

    def _perfect(self, level: int, index: int) -> bytes:
        key = (level, index)
        cached = self.cache.get(key) if level >= self.cache_level else None
        if cached is not None:
            return cached
        if level <= self.cache_level:
            start = index << level
            end = start + (1 << level)
            leaves = self._leaf_hashes(start, end)
            if len(leaves) != end - start:
                raise LookupError(
                    f"leaf_hashes({start}, {end}) returned {len(leaves)} hashes, "
                    f"expected {end - start}"
                )
            h = root_of(leaves)
        else:
            left = self._perfect(level - 1, 2 * index)
            right = self._perfect(level - 1, 2 * index + 1)
            h = _sha256(_NODE_PREFIX + left + right).digest()
        if level >= self.cache_level:
            self.cache[key] = h
        return h


def inclusion_proof(index: int, size: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """Return the RFC 9162 §2.1.3.1 inclusion proof ``PATH(index, D[0:size])``.

    The proof lists the sibling subtree hashes from the leaf's sibling up to the root's
    child. Requires ``0 <= index < size`` (``ValueError`` otherwise). Calls
    ``subtree_hash`` once per proof element (at most ``ceil(log2 size)`` times), only for
    ranges the RFC's recursion produces.
    """
    _check_uint(index, "leaf index")
    _check_uint(size, "tree size")
    if index >= size:
        raise ValueError(f"leaf index {index} is not below tree size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            proof.append(subtree_hash(mid, end))
            end = mid
        else:
            proof.append(subtree_hash(start, mid))
            start = mid
    proof.reverse()
    return proof


def consistency_proof(size1: int, size2: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """Return the RFC 9162 §2.1.4.1 consistency proof ``PROOF(size1, D[0:size2])``.

    Requires ``0 < size1 <= size2`` (``ValueError`` otherwise; a proof from the empty tree
    is meaningless). The proof is empty when ``size1 == size2``. Calls ``subtree_hash``
    once per proof element.
    """
    _check_uint(size1, "first tree size")
    _check_uint(size2, "second tree size")
    if size1 > size2:
        raise ValueError(f"first tree size {size1} exceeds second tree size {size2}")
    if size1 == 0:
        raise ValueError("a consistency proof from the empty tree is meaningless")
    proof: list[bytes] = []
    start, end = 0, size2
    whole_old_tree = True  # the RFC's flag b: D[start:end] still starts the old tree
    while size1 != end:
        mid = start + _split(end - start)
        if size1 <= mid:
            proof.append(subtree_hash(mid, end))
            end = mid
        else:
            proof.append(subtree_hash(start, mid))
            start = mid
            whole_old_tree = False
    if not whole_old_tree:
        proof.append(subtree_hash(start, end))
    proof.reverse()
    return proof


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """Return the root implied by an inclusion proof, checking its shape (RFC 9162 §2.1.3.2).

    Runs steps 1-4 of the RFC and the ``sn == 0`` check of step 5; the caller compares the
    result with a trusted root (or uses :func:`verify_inclusion`). Raises
    :class:`InvalidProofError` if ``index >= size``, if a hash is not 32 bytes, or if the
    proof has too many or too few elements for ``(index, size)``.
    """
    _check_uint(index, "leaf index", InvalidProofError)
    _check_uint(size, "tree size", InvalidProofError)
    # Step 1.
    if index >= size:
        raise InvalidProofError(f"leaf index {index} is not below tree size {size}")
    _check_hash(leaf_hash, "leaf hash", InvalidProofError)
    for i, p in enumerate(proof):
        _check_hash(p, f"inclusion proof element #{i}", InvalidProofError)
    sha = _sha256
    prefix = _NODE_PREFIX
    # Steps 2 and 3.
    fn, sn = index, size - 1
    r = leaf_hash
    # Step 4.
    for p in proof:
        # 4(a).
        if sn == 0:
            raise InvalidProofError(
                f"inclusion proof has too many elements ({len(proof)}) "
                f"for leaf {index} of tree size {size}"
            )
        # 4(b).
        if fn & 1 or fn == sn:
            # 4(b)(i).
            r = sha(prefix + p + r).digest()
            # 4(b)(ii).
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = sha(prefix + r + p).digest()
        # 4(c).
        fn >>= 1
        sn >>= 1
    # Step 5, first half.
    if sn != 0:
        raise InvalidProofError(
            f"inclusion proof has too few elements ({len(proof)}) "
            f"for leaf {index} of tree size {size}"
        )
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Verify that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    RFC 9162 §2.1.3.2 exactly. Returns ``None`` on success; raises
    :class:`InvalidProofError` on any failure: ``index >= size``, a leaf or proof hash that
    is not 32 bytes, a proof of the wrong length, or a computed root different from
    ``root``.
    """
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if computed != root:
        raise InvalidProofError(
            f"inclusion proof for leaf {index} of tree size {size} leads to root "
            f"{computed.hex()}, not the expected {root.hex()}"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Verify that the tree of ``size2`` with ``root2`` extends the one of ``size1``/``root1``.

    RFC 9162 §2.1.4.2 exactly for ``0 < size1 < size2``. Edge cases, as in the
    transparency-dev vectors: ``size1 == size2`` needs an empty proof and ``root1 ==
    root2``; ``size1 == 0`` and ``size1 > size2`` always fail. Roots are compared byte for
    byte; proof elements must be 32 bytes. Returns ``None`` on success; raises
    :class:`InvalidProofError` on any failure.
    """
    _check_uint(size1, "first tree size", InvalidProofError)
    _check_uint(size2, "second tree size", InvalidProofError)
    if size1 > size2:
        raise InvalidProofError(f"first tree size {size1} exceeds second tree size {size2}")
    if size1 == 0:
        raise InvalidProofError("a consistency proof from the empty tree proves nothing")
    for i, p in enumerate(proof):
        _check_hash(p, f"consistency proof element #{i}", InvalidProofError)
    if size1 == size2:
        if proof:
            raise InvalidProofError(f"equal tree sizes ({size1}) need an empty proof")
        if root1 != root2:
            raise InvalidProofError(f"different roots for the same tree size {size1}")
        return
    # Step 1.
    if not proof:
        raise InvalidProofError(f"empty consistency proof from size {size1} to {size2}")
    # Step 2.
    path = [root1, *proof] if size1 & (size1 - 1) == 0 else list(proof)
    sha = _sha256
    prefix = _NODE_PREFIX
    # Step 3.
    fn, sn = size1 - 1, size2 - 1
    # Step 4.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5.
    fr = sr = path[0]
    # Step 6.
    for c in path[1:]:
        # 6(a).
        if sn == 0:
            raise InvalidProofError(
                f"consistency proof has too many elements ({len(proof)}) "
                f"from size {size1} to {size2}"
            )
        # 6(b).
        if fn & 1 or fn == sn:
            fr = sha(prefix + c + fr).digest()
            sr = sha(prefix + c + sr).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = sha(prefix + sr + c).digest()
        # 6(c).
        fn >>= 1
        sn >>= 1
    # Step 7.
    if sn != 0:
        raise InvalidProofError(
            f"consistency proof has too few elements ({len(proof)}) from size {size1} to {size2}"
        )
    if fr != root1:
        raise InvalidProofError(
            f"consistency proof does not lead to the first root (size {size1}): "
            f"computed {fr.hex()}, expected {root1.hex()}"
        )
    if sr != root2:
        raise InvalidProofError(
            f"consistency proof does not lead to the second root (size {size2}): "
            f"computed {sr.hex()}, expected {root2.hex()}"
        )
