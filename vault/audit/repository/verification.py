"""The reads of ``vault audit verify``'s step-by-step checks (vault/audit/verify.py,
incremental.py): streamed in batches, from the snapshot the verifier holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, func, or_, select, true, union_all

from vault.db import Session
from vault.models import AuditChainHead, AuditCheckpoint, AuditEntry


def stream_rows(session: Session, query: Any, batch: int) -> Iterator[Any]:
    result = session.execute(query.execution_options(yield_per=batch))
    try:
        yield from result
    finally:
        # A loop that stops early must not leave a server-side cursor open.
        result.close()


def checkpoint_rows(session: Session, at_least: dict[int, int] | None) -> list[Any]:
    """Stored checkpoints by log and size, from ``at_least``'s size of each log on. Plain
    rows: objects of several logs would share identities (vault/models/audit.py)."""
    stored = select(AuditCheckpoint.__table__).order_by(
        AuditCheckpoint.log_id, AuditCheckpoint.tree_size
    )
    if at_least is not None:
        stored = stored.where(
            or_(
                *(
                    and_(AuditCheckpoint.log_id == log, AuditCheckpoint.tree_size >= size)
                    for log, size in at_least.items()
                )
            )
        )
    return list(session.execute(stored))


def chain_rows(session: Session, chain_key: str | None, batch: int) -> Iterator[Any]:
    """Every entry (or one chain's), in chain order."""
    query = select(AuditEntry.__table__).order_by(AuditEntry.chain_key, AuditEntry.chain_seq)
    if chain_key is not None:
        query = query.where(AuditEntry.chain_key == chain_key)
    return stream_rows(session, query, batch)


def head_rows(session: Session, chain_key: str | None, batch: int) -> Iterator[Any]:
    """Each chain's head (or one chain's) with the entry it names, if that entry exists:
    (chain key, last seq, last hash, entry id, entry hash, leaf index)."""
    heads = select(
        AuditChainHead.chain_key,
        AuditChainHead.last_seq,
        AuditChainHead.last_hash,
        AuditEntry.id,
        AuditEntry.entry_hash,
        AuditEntry.leaf_index,
    ).outerjoin(
        AuditEntry,
        and_(
            AuditEntry.chain_key == AuditChainHead.chain_key,
            AuditEntry.chain_seq == AuditChainHead.last_seq,
        ),
    )
    if chain_key is not None:
        heads = heads.where(AuditChainHead.chain_key == chain_key)
    return stream_rows(session, heads, batch)


def added_since(sizes: dict[int, int]) -> ColumnElement[bool]:
    """Entries placed in their log's tree from leaf ``sizes[log]`` on, or not placed yet."""
    return or_(
        *(
            and_(AuditEntry.log_id == log, AuditEntry.leaf_index >= since)
            for log, since in sizes.items()
        ),
        AuditEntry.leaf_index.is_(None),
    )


def beyond_heads(
    session: Session, chain_key: str | None, added: dict[int, int] | None
) -> list[Any]:
    """The first entry (or of one chain, or among those added since ``added``'s sizes) that
    lies beyond its chain's head or has none: (id, chain key, seq, leaf index)."""
    beyond = (
        select(AuditEntry.id, AuditEntry.chain_key, AuditEntry.chain_seq, AuditEntry.leaf_index)
        .outerjoin(AuditChainHead, AuditChainHead.chain_key == AuditEntry.chain_key)
        .where(
            (AuditChainHead.chain_key.is_(None)) | (AuditEntry.chain_seq > AuditChainHead.last_seq)
        )
        .order_by(AuditEntry.id)
        .limit(1)
    )
    if chain_key is not None:
        beyond = beyond.where(AuditEntry.chain_key == chain_key)
    if added is not None:
        beyond = beyond.where(added_since(added))
    return list(session.execute(beyond))


def last_of_chain(session: Session, chain_key: str) -> tuple[int, str, int, int | None] | None:
    row = session.execute(
        select(AuditEntry.id, AuditEntry.chain_key, AuditEntry.chain_seq, AuditEntry.leaf_index)
        .where(AuditEntry.chain_key == chain_key)
        .order_by(AuditEntry.chain_seq.desc())
        .limit(1)
    ).first()
    return (row[0], row[1], row[2], row[3]) if row else None


def leaf_rows(session: Session, log: int, start: int, batch: int) -> Iterator[Any]:
    """A log's entries in leaf order from leaf ``start``: (id, entry hash, leaf index)."""
    query = (
        select(AuditEntry.id, AuditEntry.entry_hash, AuditEntry.leaf_index)
        .where(AuditEntry.log_id == log, AuditEntry.leaf_index >= start)
        .order_by(AuditEntry.leaf_index)
    )
    return stream_rows(session, query, batch)


def entry_at(session: Session, leaf: int, log: int) -> int | None:
    return session.scalar(
        select(AuditEntry.id).where(AuditEntry.log_id == log, AuditEntry.leaf_index == leaf)
    )


def chain_leaves(
    session: Session, chain_key: str, log: int, size: int, batch: int
) -> Iterator[Any]:
    """A chain's entries in its log's tree below ``size``, in leaf order:
    (id, seq, entry hash, leaf index)."""
    query = (
        select(AuditEntry.id, AuditEntry.chain_seq, AuditEntry.entry_hash, AuditEntry.leaf_index)
        .where(
            AuditEntry.chain_key == chain_key,
            AuditEntry.log_id == log,
            AuditEntry.leaf_index < size,
        )
        .order_by(AuditEntry.leaf_index)
    )
    return stream_rows(session, query, batch)


def extended_chains(session: Session, sizes: dict[int, int], batch: int) -> Iterator[Any]:
    """Each chain that gained entries since ``sizes`` (each log's verified size), from the
    entry before its first new one, in chain order."""
    # Each part by its own index (the leaf range of each log, the partial index of
    # unplaced entries), then each chain from its entry before the first new one, again by
    # index: the plan stays proportional to what was added, whatever the size of the log.
    added = union_all(
        *(
            select(AuditEntry.chain_key, AuditEntry.chain_seq).where(
                AuditEntry.log_id == log, AuditEntry.leaf_index >= since
            )
            for log, since in sizes.items()
        ),
        select(AuditEntry.chain_key, AuditEntry.chain_seq).where(AuditEntry.leaf_index.is_(None)),
    ).subquery()
    first_new = (
        select(added.c.chain_key, func.min(added.c.chain_seq).label("first_seq"))
        .group_by(added.c.chain_key)
        .subquery()
    )
    from_before = and_(
        AuditEntry.chain_key == first_new.c.chain_key,
        AuditEntry.chain_seq >= first_new.c.first_seq - 1,
    )
    chains: FromClause
    if session.get_bind().dialect.name == "postgresql":
        # LATERAL makes each chain an index range scan; a plain join may be planned as a
        # merge over the whole chain index when the statistics lag behind the log.
        chains = select(AuditEntry.__table__).where(from_before).lateral()
        query = select(chains).select_from(first_new).join(chains, true())
    else:
        chains = AuditEntry.__table__
        query = select(chains).join(first_new, from_before)
    query = query.order_by(chains.c.chain_key, chains.c.chain_seq)
    return stream_rows(session, query, batch)
