from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from vault.db import SessionFactory
from vault.errors import VaultError
from vault.storage.blobs.base import BlobStore


def blob_store_from_url(url: str, session_factory: SessionFactory) -> BlobStore:
    parsed = urlparse(url)
    if parsed.scheme == "db":
        from vault.storage.blobs.db import DatabaseBlobStore  # noqa: PLC0415

        return DatabaseBlobStore(session_factory)
    if parsed.scheme == "file":
        from vault.storage.blobs.file import FileBlobStore  # noqa: PLC0415

        # file://blobs/x names host "blobs" and path /x: refuse it rather than guess.
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise VaultError("The file blob store needs an absolute path: file:///path")
        return FileBlobStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        from vault.storage.blobs.s3 import S3BlobStore  # noqa: PLC0415

        return S3BlobStore(bucket=parsed.netloc, prefix=parsed.path.lstrip("/"))
    raise VaultError(f"Unknown blob store {parsed.scheme!r}; use db:, file:///path or s3://bucket")
