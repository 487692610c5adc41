"""``vault audit verify``: recompute everything the log claims and compare.

1. Checkpoints: every stored (and every published, if given) checkpoint note carries a
   valid signature from a trusted key, and its columns say what the note says.
2. Chains: one pass over the entries in chain order. Each entry's hash matches its
   content (an edited entry fails here), links to the previous entry of its chain, and the
   sequence has no gap (a deleted or reordered entry fails here); each chain ends where its
   head row says (a truncated tail fails here).
3. Trees, one per audit log: one pass over the log's entries in leaf order with a compact
   range (O(log n) memory).
   Leaf indexes have no gap, every stored node equals the recomputed one, and at every
   signed tree size the recomputed root equals the signed root. A history rewritten and
   rehashed consistently (chains, heads and nodes all redone) fails only here: its root
   is no longer the one the log signed, and the signing key is not in the database.

The whole run reads one snapshot, so it can run while servers keep writing. Of all the
failures found, the one naming the earliest entry is reported.

On PostgreSQL, fast passes (vault/audit/scan/) check the chains and the tree first,
the chains split over processes that share the snapshot (vault/audit/parallel.py). They
only say whether each part is intact; the checks below, the reference, run on a part only
when its pass found something wrong, and name the failure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from vault.audit import merkle
from vault.audit.checkpoints import CheckpointService, log_origin, open_checkpoint_of
from vault.audit.findings import ChainWalk, Failure, Report, batches
from vault.audit.incremental import check_new_chains, verified_edge
from vault.audit.parallel import scan_log
from vault.audit.repository import verification
from vault.audit.repository.tree import AuditTree
from vault.audit.signing import SignatureError
from vault.db import Session, SessionFactory
from vault.errors import VaultError


class AuditVerifier:
    def __init__(
        self,
        tree: AuditTree,
        checkpoints: CheckpointService,
        batch: int = 2000,
        *,
        workers: int | None = None,
    ) -> None:
        self.tree = tree
        self.checkpoints = checkpoints
        self.batch = batch
        # Processes for the chains of a large log on PostgreSQL; one per CPU by default.
        self.workers = workers if workers is not None else _cpus()

    def verify(self, factory: SessionFactory, published: Sequence[str] = ()) -> Report:
        report = Report()
        with _snapshot(factory) as session:
            roots = self._signed_roots(session, report, published)
            chains_intact, trees_intact = self._scan(session, report, roots)
            # The reference checks name what the fast passes found wrong (and do all the
            # work on SQLite).
            if not chains_intact:
                self._check_chains(session, report, None)
                self._check_heads(session, report, None)
            if not trees_intact:
                for log, signed in roots.items():
                    self._check_tree(session, report, signed, log=log, named=_named(roots, log))
            report.note_signed(roots)
        return report

    def verify_patient(
        self, factory: SessionFactory, patient_id: str, published: Sequence[str] = ()
    ) -> Report:
        """One patient's chain, and each of its entries' inclusion in the latest signed
        tree (proofs from the stored nodes, checked against the signed root)."""
        report = Report()
        with _snapshot(factory) as session:
            roots = self._signed_roots(session, report, published)
            self._check_chains(session, report, patient_id)
            self._check_heads(session, report, patient_id)
            log = self.tree.log_of_chain(session, patient_id)
            self._check_inclusion(session, report, patient_id, roots[log], log)
        return report

    def verify_since(
        self,
        factory: SessionFactory,
        since: int | Sequence[int],
        published: Sequence[str] = (),
    ) -> Report:
        """Only what was added after the checkpoints signed at tree size ``since`` (one size
        per audit log), which an earlier verification covered (vault/audit/incremental.py
        says what this proves)."""
        report = Report()
        sizes = [since] if isinstance(since, int) else list(since)
        with _snapshot(factory) as session:
            logs = self.tree.logs(session)
            if len(sizes) != logs:
                report.failures.append(
                    Failure(
                        f"the log has {logs} trees: give one signed tree size for each, "
                        "separated by commas, as vault audit verify reported them"
                    )
                )
                return report
            roots = self._signed_roots(session, report, published, at_least=dict(enumerate(sizes)))
            anchors: dict[int, tuple[int, bytes]] = {}
            starts: dict[int, merkle.CompactRange] = {}
            for log, size in enumerate(sizes):
                anchor = roots[log].get(size, set())
                if logs > 1 and size == 0 and not anchor:
                    # A log that was still empty: its empty tree is what was verified.
                    anchor = {merkle.EMPTY_ROOT}
                if len(anchor) != 1:
                    if not anchor:
                        report.failures.append(
                            Failure(
                                f"no checkpoint is signed at tree size {size}"
                                f"{_of_log(logs, log)}: start from a size that vault audit "
                                "verify reported verified"
                            )
                        )
                    return report
                (root,) = anchor
                start = verified_edge(session, self.tree, size, root, report, log, logs)
                if start is None:
                    return report
                anchors[log], starts[log] = (size, root), start
            check_new_chains(session, report, self.tree, anchors, self.batch)
            self._check_heads(session, report, None, added=dict(enumerate(sizes)))
            for log, start in starts.items():
                self._check_tree(session, report, roots[log], start, log, _named(roots, log))
            report.note_signed(roots)
        return report

    def _scan(
        self, session: Session, report: Report, roots: dict[int, dict[int, set[bytes]]]
    ) -> tuple[bool, bool]:
        """The fast passes of vault/audit/scan/, on PostgreSQL: whether the chains (with
        their heads) and every log's tree are intact. They accept only what the reference
        checks below accept, so an intact part needs nothing more."""
        if session.get_bind().dialect.name != "postgresql":
            return False, False
        trees = {log: (signed, self.tree.size(session, log)) for log, signed in roots.items()}
        scan = scan_log(session, trees, workers=self.workers, batch=4 * self.batch)
        if scan.chains.intact:
            report.entries += scan.chains.entries
            report.chains += scan.chains.chains
        for log, leaves in scan.leaves.items():
            if leaves is not None:
                report.add_leaves(log, leaves)
        return scan.chains.intact, None not in scan.leaves.values()

    # -- checkpoints ----------------------------------------------------------------------

    def _signed_roots(
        self,
        session: Session,
        report: Report,
        published: Sequence[str],
        at_least: dict[int, int] | None = None,
    ) -> dict[int, dict[int, set[bytes]]]:
        """Each log's signed roots by tree size (from ``at_least``'s size of each log on)."""
        verifiers = self.checkpoints.verifiers()
        logs = self.tree.logs(session)
        origins = {log_origin(self.checkpoints.origin, logs, log): log for log in range(logs)}
        floor = at_least or {}
        roots: dict[int, dict[int, set[bytes]]] = {log: {} for log in range(logs)}
        for row in verification.checkpoint_rows(session, at_least):
            report.checkpoints += 1
            where = f"checkpoint{_of_log(logs, row.log_id)} at tree size {row.tree_size}"
            try:
                log, signed = open_checkpoint_of(row.note, verifiers, origins)
            except SignatureError as error:
                report.failures.append(Failure(f"{where}: {error.message}"))
                continue
            if (log, signed.tree_size, signed.root_hash) != (
                row.log_id,
                row.tree_size,
                bytes(row.root_hash),
            ):
                report.failures.append(Failure(f"{where}: differs from its note"))
                continue
            roots[log].setdefault(signed.tree_size, set()).add(signed.root_hash)
        for number, note in enumerate(published, start=1):
            try:
                log, signed = open_checkpoint_of(note, verifiers, origins)
            except SignatureError as error:
                report.failures.append(Failure(f"published checkpoint #{number}: {error.message}"))
                continue
            if signed.tree_size < floor.get(log, 0):
                continue
            roots[log].setdefault(signed.tree_size, set()).add(signed.root_hash)
        for log, signed_roots in roots.items():
            for size, found in signed_roots.items():
                if len(found) > 1:
                    report.failures.append(
                        Failure(
                            f"two different roots were signed for tree size {size}"
                            f"{_of_log(logs, log)} (a fork)"
                        )
                    )
        return roots

    # -- chains ---------------------------------------------------------------------------

    def _check_chains(self, session: Session, report: Report, chain_key: str | None) -> None:
        current: str | None = None
        walk = ChainWalk()
        for row in verification.chain_rows(session, chain_key, self.batch):
            report.entries += 1
            if row.chain_key != current:
                current, walk = row.chain_key, ChainWalk()
                report.chains += 1
            walk.check(report, row)

    def _check_heads(
        self,
        session: Session,
        report: Report,
        chain_key: str | None,
        added: dict[int, int] | None = None,
    ) -> None:
        """Every chain's head (or one chain's) names its last entry, and no entry (or no
        entry added since ``added``'s size of each log) lies beyond its chain's head."""
        for key, last_seq, last_hash, entry_id, digest, leaf in verification.head_rows(
            session, chain_key, self.batch
        ):
            if entry_id is None:
                survivor = verification.last_of_chain(session, key)
                report.failures.append(
                    Failure(
                        f"the chain's head records {last_seq} entries; the ones after "
                        "this are missing (tail truncated)",
                        *survivor,
                    )
                    if survivor
                    else Failure(
                        "every entry of the chain is missing", chain_key=key, chain_seq=last_seq
                    )
                )
            elif bytes(digest) != bytes(last_hash):
                report.failures.append(
                    Failure(
                        "the last entry is not the one the chain's head records",
                        entry_id,
                        key,
                        last_seq,
                        leaf,
                    )
                )
        for entry_id, key, seq, leaf in verification.beyond_heads(session, chain_key, added):
            report.failures.append(
                Failure("the entry is beyond its chain's recorded head", entry_id, key, seq, leaf)
            )

    # -- tree -----------------------------------------------------------------------------

    def _check_tree(
        self,
        session: Session,
        report: Report,
        roots: dict[int, set[bytes]],
        start: merkle.CompactRange | None = None,
        log: int = 0,
        named: int | None = None,
    ) -> None:
        """A log's tree from its first leaf, or from the edge of an already verified
        ``start``. ``named`` is the log as failures name it (None when it is the only one)."""
        compact = start or merkle.CompactRange()
        computed: list[tuple[int, int, bytes]] = []
        verified_size = compact.size
        intact = True
        for entry_id, digest, leaf_index in verification.leaf_rows(
            session, log, compact.size, self.batch
        ):
            if leaf_index != compact.size:
                report.failures.append(
                    Failure(
                        f"leaves {compact.size} to {leaf_index - 1} are missing before this "
                        "entry (entries deleted)",
                        entry_id,
                        leaf_index=leaf_index,
                        log_id=named,
                    )
                )
                intact = False
                break
            computed.extend(compact.append(merkle.leaf_hash(bytes(digest))))
            signed = roots.get(compact.size)
            if signed is None and len(computed) < 2 * self.batch:
                continue
            intact = self._compare_nodes(session, report, computed, log, named)
            computed = []
            if intact and signed is not None:
                intact = signed == {compact.root()}
                if not intact:
                    report.failures.append(
                        Failure(
                            f"the log no longer matches the checkpoint signed at tree size "
                            f"{compact.size}: an entry from leaf {verified_size} on was "
                            "rewritten (history rewritten and rehashed)",
                            self._entry_at(session, verified_size, log),
                            leaf_index=verified_size,
                            log_id=named,
                        )
                    )
                verified_size = compact.size
            if not intact:
                break
        if intact:
            intact = self._compare_nodes(session, report, computed, log, named)
        report.add_leaves(log, compact.size)
        largest = max(roots, default=0)
        if intact and largest > compact.size:
            report.failures.append(
                Failure(
                    f"a checkpoint was signed for {largest} leaves but the tree has "
                    f"{compact.size}: the entries from this leaf on are missing (tail truncated)",
                    leaf_index=compact.size,
                    log_id=named,
                )
            )
        recorded = self.tree.size(session, log)
        if intact and recorded != compact.size:
            report.failures.append(
                Failure(
                    f"the tree head records {recorded} leaves but {compact.size} entries "
                    "are in the tree",
                    leaf_index=min(recorded, compact.size),
                    log_id=named,
                )
            )

    def _compare_nodes(
        self,
        session: Session,
        report: Report,
        computed: list[tuple[int, int, bytes]],
        log: int,
        named: int | None,
    ) -> bool:
        stored = self.tree.fetch(session, [(level, index) for level, index, _ in computed], log)
        wrong = [
            (level, index)
            for level, index, digest in computed
            if stored.get((level, index)) != digest
        ]
        if not wrong:
            return True
        # The lowest wrong node points at the entry itself; the ones above only echo it.
        level, index = min(wrong)
        leaf = index << level
        report.failures.append(
            Failure(
                f"the tree's stored hash (level {level}, node {index}) does not match "
                "the entries (entry edited after it entered the tree, or tree altered)",
                self._entry_at(session, leaf, log),
                leaf_index=leaf,
                log_id=named,
            )
        )
        return False

    def _entry_at(self, session: Session, leaf: int, log: int) -> int | None:
        return verification.entry_at(session, leaf, log)

    def _check_inclusion(
        self,
        session: Session,
        report: Report,
        patient_id: str,
        roots: dict[int, set[bytes]],
        log: int,
    ) -> None:
        """The chain's entries in the latest signed tree of its log."""
        if not roots:
            return
        size = max(roots)
        (root,) = roots[size] if len(roots[size]) == 1 else (b"",)
        report.add_leaves(log, size)
        rows = verification.chain_leaves(session, patient_id, log, size, self.batch)
        for batch in batches(rows, 200):
            try:
                proofs = self.tree.inclusion_proofs(session, [row[3] for row in batch], size, log)
            except VaultError:
                proofs = [[] for _ in batch]
            for (entry_id, seq, digest, leaf), proof in zip(batch, proofs, strict=True):
                if not merkle.verify_inclusion(
                    leaf, size, merkle.leaf_hash(bytes(digest)), proof, root
                ):
                    report.failures.append(
                        Failure(
                            f"not included as recorded in the tree signed at size {size}",
                            entry_id,
                            patient_id,
                            seq,
                            leaf,
                        )
                    )
                    return


def _named(roots: dict[int, dict[int, set[bytes]]], log: int) -> int | None:
    """How failures name a log: not at all when it is the only one."""
    return log if len(roots) > 1 else None


def _of_log(logs: int, log: int) -> str:
    return f" of log {log}" if logs > 1 else ""


def _cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _snapshot:  # noqa: N801 - used as a context manager, reads like one
    """One consistent snapshot of the whole log, read-only."""

    def __init__(self, factory: SessionFactory) -> None:
        self._session = factory()

    def __enter__(self) -> Session:
        if self._session.get_bind().dialect.name == "postgresql":
            self._session.connection(
                execution_options={
                    "isolation_level": "REPEATABLE READ",
                    "postgresql_readonly": True,
                }
            )
        return self._session

    def __exit__(self, *_exc: object) -> None:
        self._session.rollback()
        self._session.close()
