"""Merkle tree hashing and proofs exactly as RFC 9162 (Certificate Transparency 2.0) defines
them, with no database and no I/O: the same functions serve the log, ``vault audit verify``
and anyone checking a proof outside the vault.

- leaf hash: ``SHA-256(0x00 || leaf)``, node hash: ``SHA-256(0x01 || left || right)``;
- the tree over ``n`` leaves splits at the largest power of two below ``n`` (section 2.1.1);
- inclusion proofs (2.1.3) and consistency proofs (2.1.4) and their verification.

Proof generation takes a ``subtree_hash(start, end)`` callback so the caller decides where
subtree hashes come from (stored nodes, or a list of leaves in memory).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

SubtreeHash = Callable[[int, int], bytes]


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(size: int) -> int:
    """The largest power of two strictly below ``size`` (size > 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def complete_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """``[start, end)`` as complete, aligned subtrees ``(level, node_index)``, left to
    right and shrinking: how every range RFC 9162 proofs ask for decomposes. Folding
    their hashes from the right gives the range's tree hash."""
    pieces = []
    position = start
    while position < end:
        level = (end - position).bit_length() - 1
        while position % (1 << level):
            level -= 1
        pieces.append((level, position >> level))
        position += 1 << level
    return pieces


def fold(hashes: Sequence[bytes]) -> bytes:
    """The tree hash of consecutive complete subtrees of shrinking size."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes held in memory: the reference the stored tree must match."""
    if not leaf_hashes:
        return EMPTY_ROOT
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    k = split_point(len(leaf_hashes))
    return node_hash(root_of(leaf_hashes[:k]), root_of(leaf_hashes[k:]))


def in_memory(leaf_hashes: Sequence[bytes]) -> SubtreeHash:
    return lambda start, end: root_of(leaf_hashes[start:end])


# -- proofs -----------------------------------------------------------------------------


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose hashes make PATH(index, D[size]), in proof order (leaf upwards)."""
    if not 0 <= index < size:
        raise ValueError("leaf index outside the tree")
    siblings = []
    low, high = 0, size
    while high - low > 1:
        k = split_point(high - low)
        if index - low < k:
            siblings.append((low + k, high))
            high = low + k
        else:
            siblings.append((low, low + k))
            low += k
    return list(reversed(siblings))


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The ranges whose hashes make PROOF(first, D[second]) (RFC 9162 2.1.4.1)."""
    if not 0 < first <= second:
        raise ValueError("consistency proofs need 0 < first <= second")
    ranges = []
    low, high, m, whole = 0, second, first, True
    while m != high - low:
        k = split_point(high - low)
        if m <= k:
            ranges.append((low + k, high))
            high = low + k
        else:
            ranges.append((low, low + k))
            low += k
            m -= k
            whole = False
    if not whole:
        ranges.append((low, high))
    return list(reversed(ranges))


def inclusion_proof(index: int, size: int, subtree_hash: SubtreeHash) -> list[bytes]:
    return [subtree_hash(start, end) for start, end in inclusion_ranges(index, size)]


def consistency_proof(first: int, second: int, subtree_hash: SubtreeHash) -> list[bytes]:
    return [subtree_hash(start, end) for start, end in consistency_ranges(first, second)]


def root_from_inclusion_proof(
    index: int, size: int, leaf: bytes, path: Sequence[bytes]
) -> bytes | None:
    """RFC 9162 2.1.3.2: the root a proof leads to, or None if the proof is malformed."""
    if not 0 <= index < size:
        return None
    fn, sn = index, size - 1
    result = leaf
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    return result if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """``leaf`` is the leaf hash; True when the proof shows it at ``index`` under ``root``."""
    return root_from_inclusion_proof(index, size, leaf, path) == root


def verify_consistency(
    first: int,
    second: int,
    first_root: bytes,
    second_root: bytes,
    path: Sequence[bytes],
) -> bool:
    """RFC 9162 2.1.4.2: the tree of size ``second`` extends the tree of size ``first``."""
    if not 0 < first <= second:
        return False
    if first == second:
        return not path and first_root == second_root
    if not path:
        return False
    proof = list(path)
    if first & (first - 1) == 0:
        proof.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for node in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(node, fr)
            sr = node_hash(node, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# -- streaming --------------------------------------------------------------------------


class CompactRange:
    """The right edge of a growing tree: one hash per complete subtree, O(log n) memory.

    Appending a leaf reports every subtree it completes, so a single pass over the leaves
    can both rebuild the stored nodes and produce the root at any size."""

    def __init__(self, size: int = 0, edge: Sequence[bytes] = ()) -> None:
        # ``edge`` are the hashes of complete_subtrees(0, size), left to right.
        self.size = size
        self._edge: list[tuple[int, bytes]] = [
            (level, digest)
            for (level, _), digest in zip(complete_subtrees(0, size), edge, strict=True)
        ]

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; returns the completed nodes as (level, node_index, hash)."""
        index = self.size
        completed = [(0, index, leaf)]
        level, current = 0, leaf
        while self._edge and self._edge[-1][0] == level:
            _, left = self._edge.pop()
            current = node_hash(left, current)
            level += 1
            completed.append((level, index >> level, current))
        self._edge.append((level, current))
        self.size += 1
        return completed

    def root(self) -> bytes:
        return fold([digest for _, digest in self._edge])


class CompactEdge:
    """``CompactRange`` for leaves appended a batch at a time: the same nodes and roots,
    built level by level over lists instead of leaf by leaf, for verifying large trees."""

    def __init__(self) -> None:
        self.size = 0
        # The right edge: at most one complete subtree per level, waiting for its sibling.
        self._pending: dict[int, bytes] = {}

    def extend(self, leaves: list[bytes]) -> list[tuple[int, int, list[bytes]]]:
        """Add leaf hashes; returns the nodes they complete as (level, first node index,
        hashes of consecutive nodes), lowest level first."""
        completed = []
        level, start, current = 0, self.size, leaves
        sha256 = hashlib.sha256
        while current:
            completed.append((level, start, current))
            # An odd first index is a right child whose left sibling is on the edge.
            skip = start & 1
            parents = [node_hash(self._pending.pop(level), current[0])] if skip else []
            parents += [
                sha256(NODE_PREFIX + current[i] + current[i + 1]).digest()
                for i in range(skip, len(current) - 1, 2)
            ]
            if (len(current) - skip) & 1:
                self._pending[level] = current[-1]
            level, start, current = level + 1, start >> 1, parents
        self.size += len(leaves)
        return completed

    def root(self) -> bytes:
        return fold([self._pending[level] for level in sorted(self._pending, reverse=True)])
