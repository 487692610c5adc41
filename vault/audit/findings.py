"""What a verification of the audit log finds, and the row-level checks every kind of
verification shares (the whole log, one patient, or what was added since a checkpoint)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from vault.access.chain import (
    GENESIS,
    NO_PATIENT_CHAIN,
    canonical_fields,
    entry_hash,
    hashed_values,
)


@dataclass(frozen=True)
class Failure:
    reason: str
    entry_id: int | None = None
    chain_key: str | None = None
    chain_seq: int | None = None
    leaf_index: int | None = None
    # Named only when there are several audit logs (a leaf index is a log's own).
    log_id: int | None = None

    @classmethod
    def at(cls, reason: str, row: Any) -> Failure:
        """A failure naming an entry row: its id, chain, place in the chain and leaf."""
        return cls(reason, row.id, row.chain_key, row.chain_seq, row.leaf_index)

    def describe(self) -> str:
        where = []
        if self.entry_id is not None:
            where.append(f"entry {self.entry_id}")
        if self.chain_key is not None:
            where.append(f"chain {self.chain_key} seq {self.chain_seq}")
        if self.log_id is not None:
            where.append(f"log {self.log_id}")
        if self.leaf_index is not None:
            where.append(f"leaf {self.leaf_index}")
        return f"{' '.join(where) or 'log'}: {self.reason}"

    @property
    def order(self) -> tuple[int, int, int]:
        # Log-wide failures first, then by entry, then by leaf.
        if self.entry_id is None and self.leaf_index is None:
            return (0, 0, 0)
        return (1, self.entry_id if self.entry_id is not None else 2**63, self.leaf_index or 0)


@dataclass
class Report:
    entries: int = 0
    chains: int = 0
    leaves: int = 0
    checkpoints: int = 0
    failures: list[Failure] = field(default_factory=list)
    # The largest signed tree size the run found the log intact up to: where the next
    # verification may start (``vault audit verify --since``); one per audit log.
    signed_sizes: list[int] | None = None
    # The leaves of each log's tree the run went through.
    log_leaves: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_failure(self) -> Failure | None:
        return min(self.failures, key=lambda failure: failure.order, default=None)

    @property
    def signed_size(self) -> int | str | None:
        """Where ``vault audit verify --since`` may start next: the signed size, or with
        several logs each log's, separated by commas."""
        if self.signed_sizes is None:
            return None
        if len(self.signed_sizes) == 1:
            return self.signed_sizes[0]
        return ",".join(str(size) for size in self.signed_sizes)

    def add_leaves(self, log: int, leaves: int) -> None:
        self.log_leaves[log] = leaves
        self.leaves = sum(self.log_leaves.values())

    def note_signed(self, roots: dict[int, dict[int, set[bytes]]]) -> None:
        if not self.ok:
            return
        sizes = [
            max((size for size in signed if size <= self.log_leaves.get(log, 0)), default=None)
            for log, signed in sorted(roots.items())
        ]
        if len(sizes) == 1:
            self.signed_sizes = None if sizes[0] is None else [sizes[0]]
        else:
            # A log with nothing signed yet starts from its empty tree.
            self.signed_sizes = [size or 0 for size in sizes]

    def summary(self) -> str:
        return (
            f"{self.entries} entries in {self.chains} chains, {self.leaves} leaves, "
            f"{self.checkpoints} signed checkpoints"
        )


@dataclass
class ChainWalk:
    """One chain read in order, from the entry it must start at: each entry must follow
    the one before; after the first failure, the rest of the chain is not judged."""

    expected: int = 1
    previous: bytes = GENESIS
    broken: bool = False

    def check(self, report: Report, row: Any) -> None:
        if self.broken:
            return
        problem = chain_problem(row, self.expected, self.previous)
        if problem is None:
            self.expected, self.previous = row.chain_seq + 1, bytes(row.entry_hash)
        else:
            self.fail(report, problem, row)

    def fail(self, report: Report, reason: str, row: Any) -> None:
        report.failures.append(Failure.at(reason, row))
        self.broken = True


def chain_problem(row: Any, expected: int, previous: bytes) -> str | None:
    if row.chain_seq != expected:
        return (
            f"entries {expected} to {row.chain_seq - 1} of the chain are missing before this one"
            if row.chain_seq > expected
            else "the chain's sequence repeats (entries reordered)"
        )
    if row.chain_key != (row.patient_id or NO_PATIENT_CHAIN):
        return "the entry sits in another patient's chain"
    if bytes(row.prev_hash) != previous:
        return "does not link to the previous entry of its chain (entry deleted, reordered or rewritten)"
    content = canonical_fields(**hashed_values(row))
    if entry_hash(previous, content) != bytes(row.entry_hash):
        return "the entry's content does not match its hash (entry edited)"
    return None


def batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
