"""Remove blobs that no committed record points to (left by a crash between the blob
write and the database commit). The grace period keeps in-flight uploads safe."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vault.models import Binary
from vault.models.base import utcnow
from vault.storage.blobs.base import BlobStore


def sweep_orphans(
    store: BlobStore, session_factory: sessionmaker[Session], grace: timedelta
) -> list[str]:
    removed = []
    cutoff = utcnow() - grace
    for key in list(store.list_older_than(cutoff)):
        with session_factory() as session, session.begin():
            referenced = session.scalar(select(Binary.id).where(Binary.blob_key == key))
            if referenced is None:
                store.delete(session, key)
                removed.append(key)
    return removed
