"""RFC 9162 hashing and proofs, against the RFC's own recursive definitions and the
Certificate Transparency test vectors."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vault.audit import merkle

# The RFC 6962 / 9162 reference inputs and the tree heads the CT implementations publish.
VECTOR_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
VECTOR_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _leaves(count: int) -> list[bytes]:
    return [merkle.leaf_hash(index.to_bytes(4, "big")) for index in range(count)]


def _rfc_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) written exactly as RFC 9162 2.1.3.1 recurses."""
    if len(leaves) == 1:
        return []
    k = merkle.split_point(len(leaves))
    if m < k:
        return [*_rfc_path(m, leaves[:k]), merkle.root_of(leaves[k:])]
    return [*_rfc_path(m - k, leaves[k:]), merkle.root_of(leaves[:k])]


def _rfc_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 2.1.4.1."""
    n = len(leaves)
    if m == n:
        return [] if whole else [merkle.root_of(leaves)]
    k = merkle.split_point(n)
    if m <= k:
        return [*_rfc_subproof(m, leaves[:k], whole), merkle.root_of(leaves[k:])]
    return [*_rfc_subproof(m - k, leaves[k:], False), merkle.root_of(leaves[:k])]


def test_roots_match_the_certificate_transparency_test_vectors():
    hashes = [merkle.leaf_hash(leaf) for leaf in VECTOR_LEAVES]
    for size, expected in enumerate(VECTOR_ROOTS, start=1):
        assert merkle.root_of(hashes[:size]).hex() == expected


def test_the_empty_tree_hashes_to_the_hash_of_nothing():
    assert merkle.root_of([]).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_leaves_and_nodes_are_domain_separated():
    pair = merkle.node_hash(b"a" * 32, b"b" * 32)
    assert merkle.leaf_hash(b"a" * 32 + b"b" * 32) != pair


@given(st.integers(min_value=1, max_value=300), st.data())
def test_inclusion_proofs_are_the_rfc_paths_and_verify(size, data):
    leaves = _leaves(size)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = merkle.inclusion_proof(index, size, merkle.in_memory(leaves))
    assert proof == _rfc_path(index, leaves)
    root = merkle.root_of(leaves)
    assert merkle.verify_inclusion(index, size, leaves[index], proof, root)


@given(st.integers(min_value=2, max_value=300), st.data())
def test_an_inclusion_proof_fails_for_another_leaf_index_root_or_sibling(size, data):
    leaves = _leaves(size)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    other = data.draw(st.integers(min_value=0, max_value=size - 1).filter(lambda i: i != index))
    proof = merkle.inclusion_proof(index, size, merkle.in_memory(leaves))
    root = merkle.root_of(leaves)
    assert not merkle.verify_inclusion(other, size, leaves[index], proof, root)
    assert not merkle.verify_inclusion(index, size, leaves[other], proof, root)
    assert not merkle.verify_inclusion(index, size, leaves[index], proof, merkle.leaf_hash(b"x"))
    position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
    forged = [*proof]
    forged[position] = merkle.leaf_hash(b"forged")
    assert not merkle.verify_inclusion(index, size, leaves[index], forged, root)


@given(st.integers(min_value=1, max_value=300), st.data())
def test_consistency_proofs_are_the_rfc_subproofs_and_verify(second, data):
    leaves = _leaves(second)
    first = data.draw(st.integers(min_value=1, max_value=second))
    proof = merkle.consistency_proof(first, second, merkle.in_memory(leaves))
    assert proof == _rfc_subproof(first, leaves, True)
    assert merkle.verify_consistency(
        first, second, merkle.root_of(leaves[:first]), merkle.root_of(leaves), proof
    )


@given(st.integers(min_value=2, max_value=300), st.data())
def test_a_rewritten_prefix_fails_the_consistency_proof(second, data):
    leaves = _leaves(second)
    first = data.draw(st.integers(min_value=1, max_value=second - 1))
    changed = data.draw(st.integers(min_value=0, max_value=first - 1))
    rewritten = [*leaves]
    rewritten[changed] = merkle.leaf_hash(b"rewritten")
    # The log, rewritten, proves its new tree against the old, honest first root.
    proof = merkle.consistency_proof(first, second, merkle.in_memory(rewritten))
    assert not merkle.verify_consistency(
        first, second, merkle.root_of(leaves[:first]), merkle.root_of(rewritten), proof
    )


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=1, max_value=60))
def test_a_compact_range_grows_to_the_same_root_and_nodes_as_the_whole_tree(start, extra):
    leaves = _leaves(start + extra)
    full = merkle.CompactRange()
    completed = {}
    for leaf in leaves[:start]:
        for level, index, digest in full.append(leaf):
            completed[(level, index)] = digest
    # Resuming from the stored right edge, as the tree extender does.
    edge = [completed[key] for key in merkle.complete_subtrees(0, start)]
    resumed = merkle.CompactRange(start, edge)
    for leaf in leaves[start:]:
        for level, index, digest in resumed.append(leaf):
            assert digest == merkle.root_of(leaves[index << level : (index + 1) << level])
    assert resumed.root() == merkle.root_of(leaves)


@given(
    st.integers(min_value=0, max_value=300),
    st.lists(st.integers(min_value=1, max_value=70), max_size=40),
)
def test_a_compact_edge_extended_in_batches_completes_the_nodes_and_roots_of_the_range(count, cuts):
    leaves = _leaves(count)
    reference = merkle.CompactRange()
    edge = merkle.CompactEdge()
    position = 0
    for cut in [*cuts, count]:
        batch = leaves[position : position + cut]
        expected = {
            (level, index): digest
            for leaf in batch
            for level, index, digest in reference.append(leaf)
        }
        completed = {
            (level, start + offset): digest
            for level, start, digests in edge.extend(batch)
            for offset, digest in enumerate(digests)
        }
        position += len(batch)
        assert completed == expected
        assert edge.size == reference.size == position
        assert edge.root() == reference.root() == merkle.root_of(leaves[:position])
