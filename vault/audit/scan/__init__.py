"""Fast passes over the log for ``vault audit verify`` on PostgreSQL: a verdict only.

Each pass streams plain tuples from psycopg (binary, server-side cursors) and answers
"intact" or "not intact". It accepts only what the reference checks of
``vault/audit/verify.py`` accept, which is what makes it safe to use them this way: when a
pass says "not intact", the verifier runs the reference checks on the same snapshot to
name the earliest failure, exactly as before. An intact log costs the fast passes alone;
a tampered one costs the reference's time on top.

This package imports neither SQLAlchemy nor the rest of the vault, so that a worker
process (``vault.audit.scan_worker``) starts in a fraction of a second; its SQL is in
``repository.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass
from typing import Any

import psycopg

from vault.access.chain import (
    GENESIS,
    NO_PATIENT_CHAIN,
    canonical_text,
    detail_json,
    json_string,
)
from vault.audit import merkle
from vault.audit.scan import repository
from vault.audit.scan.repository import KeyRange as KeyRange

# Details repeat (the same permission and reason for most entries); bounded, since a
# detail may also be unique to its entry.
_DETAIL_CACHE_SIZE = 4096


@dataclass
class ChainTally:
    entries: int = 0
    chains: int = 0
    intact: bool = True


def _rows(cursor: psycopg.Cursor[Any], batch: int) -> Iterator[Any]:
    while rows := cursor.fetchmany(batch):
        yield from rows


def check_chains(connection: psycopg.Connection[Any], keys: KeyRange, batch: int) -> ChainTally:
    """Every chain whose key is in ``keys``: each entry's hash matches its content and
    links to the previous one, sequences run 1, 2, ... without gap, each entry sits in its
    patient's chain, and the chain heads are exactly the chains' last entries (no head
    without entries, no entries without head, none beyond it).

    Heads and entries come in the same order (``ORDER BY chain_key`` on both), so each
    chain's head is simply the next head row."""
    tally = ChainTally()
    entries_query, params = repository.entries_in(keys)
    heads_query, _ = repository.heads_in(keys)
    sha256 = hashlib.sha256
    details: dict[str, str] = {}
    current: str | None = None
    chain_json = ""
    expected, previous = 1, GENESIS
    with (
        connection.cursor("audit_verify_heads", binary=True) as heads_cursor,
        connection.cursor("audit_verify_chains", binary=True) as cursor,
    ):
        heads_cursor.execute(heads_query, params)
        cursor.execute(entries_query, params)
        heads = _rows(heads_cursor, batch)
        while rows := cursor.fetchmany(batch):
            tally.entries += len(rows)
            for (
                key,
                seq,
                at,
                patient,
                action,
                outcome,
                purpose,
                role,
                actor,
                on_behalf_of,
                client,
                token,
                source_ip,
                resource_type,
                resource_id,
                detail,
                prev_hash,
                digest,
            ) in rows:
                if key != current:
                    if current is not None and next(heads, None) != (
                        current,
                        expected - 1,
                        previous,
                    ):
                        return _broken(tally)
                    current, expected, previous = key, 1, GENESIS
                    chain_json = json_string(key)
                    tally.chains += 1
                if seq != expected or key != (patient or NO_PATIENT_CHAIN) or prev_hash != previous:
                    return _broken(tally)
                detail_text = details.get(detail)
                if detail_text is None:
                    if len(details) >= _DETAIL_CACHE_SIZE:
                        details.clear()
                    detail_text = details[detail] = detail_json(json.loads(detail))
                content = canonical_text(
                    chain_json,
                    seq,
                    at.isoformat("T", "microseconds"),
                    patient,
                    action,
                    outcome,
                    purpose,
                    role,
                    actor,
                    on_behalf_of,
                    client,
                    token,
                    source_ip,
                    resource_type,
                    resource_id,
                    detail_text,
                )
                if sha256(prev_hash + content.encode()).digest() != digest:
                    return _broken(tally)
                previous = digest
                expected += 1
        if current is not None and next(heads, None) != (current, expected - 1, previous):
            return _broken(tally)
        if next(heads, None) is not None:
            return _broken(tally)
    return tally


def _broken(tally: ChainTally) -> ChainTally:
    tally.intact = False
    return tally


def check_tree(
    connection: psycopg.Connection[Any],
    roots: Mapping[int, Set[bytes]],
    recorded_size: int,
    batch: int,
    log: int = 0,
) -> int | None:
    """One audit log's Merkle tree: leaves in order without gap, every stored node equal to the one
    recomputed from the entries, the recomputed root equal to the signed root at every
    signed size, no signed size beyond the tree, and the tree head's size. Returns the
    number of leaves, or None when any of it fails."""
    tree = merkle.CompactEdge()
    signed = sorted(roots)
    next_signed = 0
    leaf_hash = merkle.leaf_hash
    with (
        connection.cursor("audit_verify_leaves", binary=True) as cursor,
        connection.cursor(binary=True) as nodes,
    ):
        cursor.execute(repository.LEAVES, (log,))
        while rows := cursor.fetchmany(batch):
            start = tree.size
            if [leaf for _, leaf in rows] != list(range(start, start + len(rows))):
                return None
            leaves = [leaf_hash(digest) for digest, _ in rows]
            end = start + len(leaves)
            position = 0
            # Cut the batch at every signed size inside it, where the root is compared.
            while position < len(leaves):
                while next_signed < len(signed) and signed[next_signed] <= tree.size:
                    next_signed += 1
                cut = end
                if next_signed < len(signed) and signed[next_signed] < end:
                    cut = signed[next_signed]
                piece = leaves[position : cut - start]
                position = cut - start
                if not _stored_as_computed(nodes, tree.extend(piece), log):
                    return None
                if tree.size in roots and roots[tree.size] != {tree.root()}:
                    return None
    if max(signed, default=0) > tree.size or recorded_size != tree.size:
        return None
    return tree.size


def _stored_as_computed(
    nodes: psycopg.Cursor[Any], computed: list[tuple[int, int, list[bytes]]], log: int
) -> bool:
    for level, start, hashes in computed:
        nodes.execute(repository.NODES, (log, level, start, start + len(hashes)))
        stored = nodes.fetchall()
        # Indexes too: a stored tree with duplicates must not pass for a complete one.
        if [index for index, _ in stored] != list(range(start, start + len(hashes))):
            return False
        if [digest for _, digest in stored] != hashes:
            return False
    return True
