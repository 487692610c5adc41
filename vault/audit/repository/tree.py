"""The Merkle trees of the audit logs, stored as their complete subtrees.

There is one tree per audit log (one log unless ``vault audit logs`` set more while the
log was empty); each chain belongs to one log. Every method works on one log's tree,
log 0 unless told. Leaf ``i`` of a log is the ``entry_hash`` of its entry given
``leaf_index = i``. Entries get their
index when the tree is extended, in the order the extender sees them committed: a writer
that commits late simply lands later in the tree, so the tree never needs rewriting and
never waits on an open transaction.

Storage is every complete subtree hash (about two rows per entry). A root or a proof then
costs O(log n) stored hashes fetched in one query, whatever the size of the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vault.audit import merkle
from vault.errors import BadRequest, Conflict, IntegrityError
from vault.models import AuditChainHead, AuditEntry, AuditTreeHead, AuditTreeNode

# An entry is placed by its primary key, which leads with its chain (its shard).
_ENTRIES = cast(Table, AuditEntry.__table__)
_PLACE = (
    update(_ENTRIES)
    .where(_ENTRIES.c.chain_key == bindparam("key"), _ENTRIES.c.chain_seq == bindparam("seq"))
    .values(leaf_index=bindparam("leaf"))
)

# log_id is a SMALLINT; far more logs than shards anyone would run.
MAX_LOGS = 1024


class AuditTree:
    def logs(self, session: Session) -> int:
        """How many audit logs there are: one tree head per log, none yet meaning one."""
        return max(int(session.scalar(select(func.count()).select_from(AuditTreeHead)) or 0), 1)

    def configure(self, session: Session, logs: int) -> None:
        """Set the number of logs; only while the log holds nothing (a chain's log is
        decided by its first entry, and a tree never moves its leaves)."""
        if not 1 <= logs <= MAX_LOGS:
            raise BadRequest(f"The number of audit logs is between 1 and {MAX_LOGS}")
        if session.scalar(select(AuditChainHead.chain_key).limit(1)) is not None:
            raise Conflict("The audit log already holds entries: its number of logs is fixed")
        session.execute(delete(AuditTreeHead))
        session.execute(insert(AuditTreeHead), [{"log_id": i, "size": 0} for i in range(logs)])
        session.flush()

    def size(self, session: Session, log: int = 0) -> int:
        size = session.scalar(select(AuditTreeHead.size).where(AuditTreeHead.log_id == log))
        return int(size or 0)

    def lock(self, session: Session, log: int = 0) -> int:
        """Claim a log's tree for this transaction (one extender at a time across
        processes) and return its size. The UPDATE takes the row lock before anything is
        read."""
        upsert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
        session.execute(
            upsert(AuditTreeHead)
            .values(log_id=log, size=0)
            .on_conflict_do_nothing(index_elements=["log_id"])
        )
        session.execute(
            update(AuditTreeHead).where(AuditTreeHead.log_id == log).values(size=AuditTreeHead.size)
        )
        return self.size(session, log)

    def extend(self, session: Session, limit: int, log: int = 0) -> int:
        """Take up to ``limit`` committed entries of a log not yet in its tree; returns
        how many. The caller holds ``lock`` and commits."""
        size = self.lock(session, log)
        pending = session.execute(
            select(AuditEntry.chain_key, AuditEntry.chain_seq, AuditEntry.entry_hash)
            .where(AuditEntry.log_id == log, AuditEntry.leaf_index.is_(None))
            .order_by(AuditEntry.id)
            .limit(limit)
        ).all()
        if not pending:
            return 0
        edge = self.hashes(session, merkle.complete_subtrees(0, size), log)
        compact = merkle.CompactRange(size, edge)
        nodes: list[dict[str, object]] = []
        placed: list[dict[str, object]] = []
        for chain_key, chain_seq, entry_hash in pending:
            placed.append({"key": chain_key, "seq": chain_seq, "leaf": compact.size})
            for level, index, digest in compact.append(merkle.leaf_hash(bytes(entry_hash))):
                nodes.append({"log_id": log, "level": level, "node_index": index, "hash": digest})
        session.execute(_PLACE, placed)
        session.execute(insert(AuditTreeNode), nodes)
        session.execute(
            update(AuditTreeHead).where(AuditTreeHead.log_id == log).values(size=compact.size)
        )
        session.flush()
        return len(pending)

    def hashes(self, session: Session, keys: list[tuple[int, int]], log: int = 0) -> list[bytes]:
        """Stored node hashes, in the order asked; every one must exist."""
        if not keys:
            return []
        found = self.fetch(session, keys, log)
        missing = [key for key in keys if key not in found]
        if missing:
            raise IntegrityError("The audit tree is missing nodes; run vault audit verify")
        return [found[key] for key in keys]

    def fetch(
        self, session: Session, keys: Iterable[tuple[int, int]], log: int = 0
    ) -> dict[tuple[int, int], bytes]:
        by_level: dict[int, list[int]] = {}
        for level, index in set(keys):
            by_level.setdefault(level, []).append(index)
        found: dict[tuple[int, int], bytes] = {}
        for level, indexes in sorted(by_level.items()):
            indexes.sort()
            for chunk in _runs(indexes):
                # One level at a time: a row-value IN list is planned as one index probe
                # per pair, which costs more to plan than to run.
                condition = (
                    AuditTreeNode.node_index.between(chunk[0], chunk[-1])
                    if len(chunk) > 1 and chunk[-1] - chunk[0] < 2 * len(chunk)
                    else AuditTreeNode.node_index.in_(chunk)
                )
                rows = session.execute(
                    select(AuditTreeNode.node_index, AuditTreeNode.hash).where(
                        AuditTreeNode.log_id == log, AuditTreeNode.level == level, condition
                    )
                )
                wanted = set(chunk)
                for index, digest in rows:
                    if int(index) in wanted:
                        found[(level, int(index))] = bytes(digest)
        return found

    def _ranges(self, session: Session, ranges: list[tuple[int, int]], log: int) -> list[bytes]:
        pieces = [merkle.complete_subtrees(start, end) for start, end in ranges]
        stored = dict(
            zip(
                (key for piece in pieces for key in piece),
                self.hashes(session, [key for piece in pieces for key in piece], log),
                strict=True,
            )
        )
        return [merkle.fold([stored[key] for key in piece]) for piece in pieces]

    def _check_size(self, session: Session, size: int, what: str, log: int) -> None:
        if size < 0 or size > self.size(session, log):
            raise BadRequest(f"{what} is larger than the audit tree", expression=what)

    def root(self, session: Session, size: int, log: int = 0) -> bytes:
        self._check_size(session, size, "tree_size", log)
        return self._ranges(session, [(0, size)], log)[0] if size else merkle.EMPTY_ROOT

    def inclusion_proof(self, session: Session, index: int, size: int, log: int = 0) -> list[bytes]:
        self._check_size(session, size, "tree_size", log)
        if not 0 <= index < size:
            raise BadRequest("leaf must be below tree_size", expression="leaf")
        return self._ranges(session, merkle.inclusion_ranges(index, size), log)

    def inclusion_proofs(
        self, session: Session, indexes: list[int], size: int, log: int = 0
    ) -> list[list[bytes]]:
        """Several proofs against one tree size, their nodes fetched together."""
        self._check_size(session, size, "tree_size", log)
        if any(not 0 <= index < size for index in indexes):
            raise BadRequest("leaf must be below tree_size", expression="leaf")
        per_leaf = [merkle.inclusion_ranges(index, size) for index in indexes]
        hashes = iter(self._ranges(session, [r for ranges in per_leaf for r in ranges], log))
        return [[next(hashes) for _ in ranges] for ranges in per_leaf]

    def consistency_proof(
        self, session: Session, first: int, second: int, log: int = 0
    ) -> list[bytes]:
        self._check_size(session, second, "second", log)
        if not 0 < first <= second:
            raise BadRequest("Consistency proofs need 0 < first <= second", expression="first")
        return self._ranges(session, merkle.consistency_ranges(first, second), log)

    def leaf_entry(self, session: Session, index: int, log: int = 0) -> AuditEntry | None:
        return session.scalar(
            select(AuditEntry).where(AuditEntry.log_id == log, AuditEntry.leaf_index == index)
        )

    def leaf_index_of(self, session: Session, entry_id: int) -> int | None:
        """The entry's leaf in its log's tree (``log_of`` says which log)."""
        return session.scalar(select(AuditEntry.leaf_index).where(AuditEntry.id == entry_id))

    def log_of(self, session: Session, entry_id: int) -> int | None:
        """The log whose tree holds (or will hold) the entry."""
        return session.scalar(select(AuditEntry.log_id).where(AuditEntry.id == entry_id))

    def log_of_chain(self, session: Session, chain_key: str) -> int:
        """The log a chain (a patient's id) belongs to; log 0 for a chain not begun."""
        log = session.scalar(
            select(AuditChainHead.log_id).where(AuditChainHead.chain_key == chain_key)
        )
        return int(log or 0)

    def pending(self, session: Session) -> int:
        count = session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.leaf_index.is_(None))
        )
        return int(count or 0)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _runs(indexes: list[int], size: int = 500) -> Iterable[list[int]]:
    """Sorted indexes in bounded chunks: a proof needs O(log^2 n) nodes, a batch check a
    few thousand, mostly consecutive."""
    for start in range(0, len(indexes), size):
        yield indexes[start : start + size]
