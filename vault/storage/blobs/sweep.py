"""Remove blobs that no committed record points to, and the ciphertext of deleted documents.

A document's blob is written (durably) before the transaction that records it commits, so a
crash or a failed transaction between the two leaves a blob nobody references, never a
record without its blob. The sweep removes those leftovers once they are older than a grace
period, which must exceed the longest request: a blob that young may belong to a
transaction still in flight.

A deleted document's content is unreadable from the moment its data key is destroyed
(crypto-shredding); its ciphertext is noise that only takes space. The sweep removes it too,
once the deletion is older than the same grace period: a backup that read its snapshot
before the deletion may still be copying that blob, so the grace must also exceed the
longest backup run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from vault.db import SessionFactory
from vault.models.base import utcnow
from vault.storage.blobs import repository
from vault.storage.blobs.base import BlobStore

_BATCH = 500


@dataclass(frozen=True)
class SweepResult:
    #: Keys of the blobs removed: orphans, and deleted documents' ciphertext.
    removed: list[str] = field(default_factory=list)
    #: Interrupted writes discarded (``.part`` files, unfinished multipart uploads).
    interrupted: int = 0


def sweep_orphans(
    store: BlobStore,
    session_factory: SessionFactory,
    grace: timedelta,
    *,
    now: datetime | None = None,
) -> SweepResult:
    cutoff = (now or utcnow()) - grace
    interrupted = store.drop_interrupted(cutoff)
    removed: list[str] = []
    for batch in _batches(store.list_older_than(cutoff), _BATCH):
        with session_factory() as session, session.begin():
            referenced = repository.needed_keys(session, batch, cutoff)
            for key in batch:
                if key not in referenced:
                    store.delete(session, key)
                    removed.append(key)
    return SweepResult(removed, interrupted)


def _batches(keys: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(keys)
    while batch := list(islice(iterator, size)):
        yield batch
