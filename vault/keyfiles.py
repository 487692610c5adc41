"""Key files are created whole or not at all.

A key file is written to a temporary file beside it, flushed to disk, then linked into
place: ``link`` fails when the name exists, so of two processes creating the same key at
once (``vault serve --workers 2`` on a fresh data directory) exactly one wins and the other
reads the winner's key; a kill at any moment leaves either no key file or a whole one, never
an empty or half-written file that would stop every later start.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def create_private_file(path: Path, data: bytes) -> bool:
    """Create ``path`` (mode 0600) holding ``data``, unless it exists.

    True when this call created it, False when the file was there already (or another
    process created it meanwhile): the caller then reads what is there.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    staging = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(staging, path)
        except FileExistsError:
            return False
        _sync_directory(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()


def replace_private_file(path: Path, data: bytes) -> None:
    """Replace ``path`` (mode 0600) with ``data`` in one step: readers see the old file or
    the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    staging = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        staging.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    # The new name must survive a power loss too, not only the file's bytes.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
