"""The global Merkle tree over every audit entry, stored as its complete subtrees.

Leaf ``i`` is the ``entry_hash`` of the entry given ``leaf_index = i``. Entries get their
index when the tree is extended, in the order the extender sees them committed: a writer
that commits late simply lands later in the tree, so the tree never needs rewriting and
never waits on an open transaction.

Storage is every complete subtree hash (about two rows per entry). A root or a proof then
costs O(log n) stored hashes fetched in one query, whatever the size of the log.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vault.audit import merkle
from vault.errors import BadRequest, IntegrityError
from vault.models import AuditEntry, AuditTreeHead, AuditTreeNode

HEAD_ID = 1


class AuditTree:
    def size(self, session: Session) -> int:
        size = session.scalar(select(AuditTreeHead.size).where(AuditTreeHead.id == HEAD_ID))
        return int(size or 0)

    def lock(self, session: Session) -> int:
        """Claim the tree for this transaction (one extender at a time across processes)
        and return its size. The UPDATE takes the row lock before anything is read."""
        upsert = postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert
        session.execute(
            upsert(AuditTreeHead)
            .values(id=HEAD_ID, size=0)
            .on_conflict_do_nothing(index_elements=["id"])
        )
        session.execute(
            update(AuditTreeHead).where(AuditTreeHead.id == HEAD_ID).values(size=AuditTreeHead.size)
        )
        return self.size(session)

    def extend(self, session: Session, limit: int) -> int:
        """Take up to ``limit`` committed entries not yet in the tree; returns how many.
        The caller holds ``lock`` and commits."""
        size = self.lock(session)
        pending = session.execute(
            select(AuditEntry.id, AuditEntry.entry_hash)
            .where(AuditEntry.leaf_index.is_(None))
            .order_by(AuditEntry.id)
            .limit(limit)
        ).all()
        if not pending:
            return 0
        edge = self.hashes(session, merkle.complete_subtrees(0, size))
        compact = merkle.CompactRange(size, edge)
        nodes: list[dict[str, object]] = []
        placed: list[dict[str, object]] = []
        for entry_id, entry_hash in pending:
            placed.append({"id": entry_id, "leaf_index": compact.size})
            for level, index, digest in compact.append(merkle.leaf_hash(bytes(entry_hash))):
                nodes.append({"level": level, "node_index": index, "hash": digest})
        session.execute(update(AuditEntry), placed)
        session.execute(insert(AuditTreeNode), nodes)
        session.execute(
            update(AuditTreeHead).where(AuditTreeHead.id == HEAD_ID).values(size=compact.size)
        )
        session.flush()
        return len(pending)

    def hashes(self, session: Session, keys: list[tuple[int, int]]) -> list[bytes]:
        """Stored node hashes, in the order asked; every one must exist."""
        if not keys:
            return []
        found = self.fetch(session, keys)
        missing = [key for key in keys if key not in found]
        if missing:
            raise IntegrityError("The audit tree is missing nodes; run vault audit verify")
        return [found[key] for key in keys]

    def fetch(
        self, session: Session, keys: Iterable[tuple[int, int]]
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
                        AuditTreeNode.level == level, condition
                    )
                )
                wanted = set(chunk)
                for index, digest in rows:
                    if int(index) in wanted:
                        found[(level, int(index))] = bytes(digest)
        return found

    def _ranges(self, session: Session, ranges: list[tuple[int, int]]) -> list[bytes]:
        pieces = [merkle.complete_subtrees(start, end) for start, end in ranges]
        stored = dict(
            zip(
                (key for piece in pieces for key in piece),
                self.hashes(session, [key for piece in pieces for key in piece]),
                strict=True,
            )
        )
        return [merkle.fold([stored[key] for key in piece]) for piece in pieces]

    def _check_size(self, session: Session, size: int, what: str) -> None:
        if size < 0 or size > self.size(session):
            raise BadRequest(f"{what} is larger than the audit tree", expression=what)

    def root(self, session: Session, size: int) -> bytes:
        self._check_size(session, size, "tree_size")
        return self._ranges(session, [(0, size)])[0] if size else merkle.EMPTY_ROOT

    def inclusion_proof(self, session: Session, index: int, size: int) -> list[bytes]:
        self._check_size(session, size, "tree_size")
        if not 0 <= index < size:
            raise BadRequest("leaf must be below tree_size", expression="leaf")
        return self._ranges(session, merkle.inclusion_ranges(index, size))

    def inclusion_proofs(
        self, session: Session, indexes: list[int], size: int
    ) -> list[list[bytes]]:
        """Several proofs against one tree size, their nodes fetched together."""
        self._check_size(session, size, "tree_size")
        if any(not 0 <= index < size for index in indexes):
            raise BadRequest("leaf must be below tree_size", expression="leaf")
        per_leaf = [merkle.inclusion_ranges(index, size) for index in indexes]
        hashes = iter(self._ranges(session, [r for ranges in per_leaf for r in ranges]))
        return [[next(hashes) for _ in ranges] for ranges in per_leaf]

    def consistency_proof(self, session: Session, first: int, second: int) -> list[bytes]:
        self._check_size(session, second, "second")
        if not 0 < first <= second:
            raise BadRequest("Consistency proofs need 0 < first <= second", expression="first")
        return self._ranges(session, merkle.consistency_ranges(first, second))

    def leaf_entry(self, session: Session, index: int) -> AuditEntry | None:
        return session.scalar(select(AuditEntry).where(AuditEntry.leaf_index == index))

    def leaf_index_of(self, session: Session, entry_id: int) -> int | None:
        return session.scalar(select(AuditEntry.leaf_index).where(AuditEntry.id == entry_id))

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
