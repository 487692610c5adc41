"""Verifying only what the audit log gained since a checkpoint an earlier verification
covered (``vault audit verify --since SIZE``), so that a log of billions of entries can be
checked every day in minutes, and in full less often.

What it proves, given that the log was intact up to the checkpoint signed at tree size
``since`` (root ``R``) when it was last verified:

- the stored nodes of the tree's left edge at ``since`` still give ``R``, so the tree the
  new leaves are appended to is the verified one;
- every entry added since (in the tree from leaf ``since`` on, or not yet in it) matches
  its hash, links to the previous entry of its chain, and leaves no gap; the previous entry
  of each chain the new entries extend matches its own hash and is included at its leaf in
  the tree signed as ``R`` (so a new entry cannot be chained onto a rewritten old one);
- every chain's head still names an entry with its hash (a tail deleted is found, even one
  not yet in the tree), and no new entry lies beyond its chain's head;
- the new part of the tree matches its stored nodes and every root signed since.

What it does not: re-read the entries before ``since`` that no new entry links to. An old
entry rewritten since the last verification, without its tree nodes, is found by the next
full verification, not by this one.

With several audit logs, each log has its own ``since`` (a size signed for that log's
tree), and all of the above holds for each.
"""

from __future__ import annotations

from typing import Any

from vault.audit import merkle
from vault.audit.findings import ChainWalk, Failure, Report, batches
from vault.audit.repository import verification
from vault.audit.repository.tree import AuditTree
from vault.db import Session
from vault.errors import VaultError

# Previous entries proven included per query of tree nodes.
_PROOFS_TOGETHER = 1000


def verified_edge(
    session: Session,
    tree: AuditTree,
    since: int,
    root: bytes,
    report: Report,
    log: int = 0,
    logs: int = 1,
) -> merkle.CompactRange | None:
    """A log's tree's left edge at ``since``, from its stored nodes, if they still give the
    signed root; None (and the failure on the report) if not."""
    try:
        edge = tree.hashes(session, merkle.complete_subtrees(0, since), log)
    except VaultError:
        edge = None
    start = None if edge is None else merkle.CompactRange(since, edge)
    if start is None or start.root() != root:
        of_log = f" of log {log}" if logs > 1 else ""
        report.failures.append(
            Failure(
                f"the tree's stored nodes no longer give the root signed at tree size {since}"
                f"{of_log}: the part verified before was altered (run a full verification)",
                leaf_index=since,
                log_id=log if logs > 1 else None,
            )
        )
        return None
    return start


def check_new_chains(
    session: Session,
    report: Report,
    tree: AuditTree,
    anchors: dict[int, tuple[int, bytes]],
    batch: int,
) -> None:
    """Each chain the new entries extend, from the entry before its first new one.
    ``anchors`` holds each log's verified size and its signed root."""
    verified: list[Any] = []
    current: str | None = None
    walk = ChainWalk()
    sizes = {log: since for log, (since, _root) in anchors.items()}
    for row in verification.extended_chains(session, sizes, batch):
        if row.chain_key != current:
            current = row.chain_key
            report.chains += 1
            since = anchors[row.log_id][0] if row.log_id in anchors else 0
            if row.leaf_index is not None and row.leaf_index < since:
                # The last verified entry of the chain: it must match its own hash, and
                # still be what the tree signed at ``since`` holds.
                walk = ChainWalk(row.chain_seq, bytes(row.prev_hash))
                walk.check(report, row)
                if not walk.broken:
                    verified.append(row)
                continue
            walk = ChainWalk()
            if row.chain_seq != 1:
                walk.fail(
                    report, "the entry before this one in its chain is missing (entry deleted)", row
                )
        report.entries += 1
        walk.check(report, row)
    for log, (since, root) in anchors.items():
        rows = [row for row in verified if row.log_id == log]
        _check_included(session, report, tree, rows, since, root, log)


def _check_included(
    session: Session,
    report: Report,
    tree: AuditTree,
    rows: list[Any],
    size: int,
    root: bytes,
    log: int,
) -> None:
    for group in batches(rows, _PROOFS_TOGETHER):
        try:
            proofs = tree.inclusion_proofs(session, [row.leaf_index for row in group], size, log)
        except VaultError:
            proofs = [[] for _ in group]
        for row, proof in zip(group, proofs, strict=True):
            leaf = merkle.leaf_hash(bytes(row.entry_hash))
            if not merkle.verify_inclusion(row.leaf_index, size, leaf, proof, root):
                report.failures.append(
                    Failure.at(
                        f"not included as recorded in the tree signed at size {size}: "
                        "rewritten after it was verified",
                        row,
                    )
                )
