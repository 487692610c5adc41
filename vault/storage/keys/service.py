"""Patient key-encryption keys: created on first use, wrapped by the master key, cached
unwrapped in memory for a short while so a busy patient does not cost an HSM call per read,
nor a query per document written."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag

from vault.db import Session
from vault.errors import IntegrityError
from vault.models import PatientKey
from vault.models.base import new_id
from vault.storage import crypto
from vault.storage.keys import repository
from vault.storage.keys.provider import KeyProvider
from vault.storage.keys.retirement import Retirement, retire_unused_master_keys

CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class Kek:
    id: str
    key: bytes


def _kek_context(patient_id: str, kek_id: str) -> bytes:
    return crypto.associated_data("patient-kek", patient_id, kek_id)


class KeyService:
    def __init__(self, provider: KeyProvider, cache_seconds: float = 300.0) -> None:
        self.provider = provider
        # Unwrapped KEKs by KEK id, and each patient's active KEK by patient id.
        self._cache = _ExpiringCache(cache_seconds)
        self._active = _ExpiringCache(cache_seconds)

    # -- patient KEKs ---------------------------------------------------------------

    def active_kek(self, session: Session, patient_id: str) -> Kek:
        kek = self.find_active_kek(session, patient_id)
        if kek is None:
            kek = self.create_kek(session, patient_id)
            memo = _transaction_memo(session)
            if memo is not None:
                memo[patient_id] = kek
        return kek

    def find_active_kek(self, session: Session, patient_id: str) -> Kek | None:
        """The patient's active key, None when they have none yet. Every patient is given
        one with their record, so finding it also shows the patient exists."""
        # A document's content and its metadata are both sealed under this key: it is
        # looked up once per transaction, and forgotten with it (a key created here
        # exists only if the transaction commits).
        memo = _transaction_memo(session)
        if memo is not None and patient_id in memo:
            return memo[patient_id]
        kek = self._active.recall(patient_id)
        if kek is None:
            row = repository.active_key(session, patient_id)
            if row is None:
                return None
            kek = self._unwrapped(row)
            if row.id not in session.info.get(_CREATED_KEKS, ()):
                # Committed (this session did not make it), so it stays the active key: no
                # key is ever retired. A key rotation that retires KEKs must forget it.
                self._active.remember(patient_id, kek)
        if memo is not None:
            memo[patient_id] = kek
        return kek

    def create_kek(self, session: Session, patient_id: str) -> Kek:
        kek = Kek(id=new_id(), key=crypto.new_data_key())
        master_key_id, wrapped = self.provider.wrap(kek.key, _kek_context(patient_id, kek.id))
        session.add(
            PatientKey(
                id=kek.id, patient_id=patient_id, wrapped_key=wrapped, master_key_id=master_key_id
            )
        )
        # Not the active key of the process cache until committed: the transaction may
        # still roll back.
        session.info.setdefault(_CREATED_KEKS, set()).add(kek.id)
        # No flush here: a new patient's row and its first key are inserted together, and
        # the unit of work orders them by their foreign key.
        self._cache.remember(kek.id, kek)
        return kek

    def kek(self, session: Session, patient_id: str, kek_id: str) -> Kek:
        cached = self._cache.recall(kek_id)
        if cached is not None:
            return cached
        row = session.get(PatientKey, {"patient_id": patient_id, "id": kek_id})
        if row is None:
            raise IntegrityError("A key needed to decrypt this record is missing")
        return self._unwrapped(row)

    def _unwrapped(self, row: PatientKey) -> Kek:
        cached = self._cache.recall(row.id)
        if cached is not None:
            return cached
        key = self.provider.unwrap(
            row.master_key_id, row.wrapped_key, _kek_context(row.patient_id, row.id)
        )
        kek = Kek(id=row.id, key=key)
        self._cache.remember(kek.id, kek)
        return kek

    # -- data keys ------------------------------------------------------------------

    @staticmethod
    def wrap_data_key(kek: Kek, data_key: bytes, context: bytes) -> bytes:
        return crypto.seal(kek.key, data_key, context)

    @staticmethod
    def unwrap_data_key(kek: Kek, wrapped: bytes, context: bytes) -> bytes:
        try:
            return crypto.open_sealed(kek.key, wrapped, context)
        except (IntegrityError, InvalidTag):
            raise IntegrityError("A wrapped data key does not authenticate") from None

    # -- rotation -------------------------------------------------------------------

    def rotate_master_key(
        self,
        session_factory: Callable[[], Session],
        batch_size: int = 500,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[str, int]:
        """New master key, then rewrap every patient KEK under it, batch by batch.

        Documents are not touched: their data keys are wrapped by the patient KEKs, whose
        key material does not change. Safe to re-run after an interruption.
        """
        new_master = self.provider.rotate()
        rewrapped = 0
        for batch in self._stale_keys(session_factory, new_master, batch_size):
            with session_factory() as session, session.begin():
                for patient_id, key_id in batch:
                    row = session.get(
                        PatientKey, {"patient_id": patient_id, "id": key_id}, with_for_update=True
                    )
                    if row is None or row.master_key_id == new_master:
                        continue
                    context = _kek_context(row.patient_id, row.id)
                    plain = self.provider.unwrap(row.master_key_id, row.wrapped_key, context)
                    master_key_id, wrapped = self.provider.wrap(plain, context)
                    repository.rewrap(session, row.patient_id, row.id, wrapped, master_key_id)
                    rewrapped += 1
            if progress is not None:
                progress(len(batch))
        return new_master, rewrapped

    @staticmethod
    def _stale_keys(
        session_factory: Callable[[], Session], master_key_id: str, batch_size: int
    ) -> Iterator[list[tuple[str, str]]]:
        """(patient id, key id) pairs, in the order of the keys' primary key."""
        last = ("", "")
        while True:
            with session_factory() as session:
                keys = repository.keys_not_under(session, master_key_id, last, batch_size)
            if not keys:
                return
            yield keys
            last = keys[-1]

    def retire_unused_master_keys(
        self, session: Session, retention: timedelta, now: datetime | None = None
    ) -> Retirement:
        """Destroy master keys that no patient KEK still needs and that no backup kept
        for ``retention`` can need (vault/storage/keys/retirement.py)."""
        return retire_unused_master_keys(self.provider, session, retention, now)

    def count_stale(self, session: Session) -> int:
        return repository.count_not_under(session, self.provider.current_master_key_id())

    def forget(self) -> None:
        self._cache.clear()
        self._active.clear()


class _ExpiringCache:
    """KEKs kept in memory for a while, the least recently used dropped first."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._entries: OrderedDict[str, tuple[float, Kek]] = OrderedDict()
        self._lock = threading.Lock()

    def recall(self, key: str) -> Kek | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            expires, kek = hit
            if expires < time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return kek

    def remember(self, key: str, kek: Kek) -> None:
        if self._seconds <= 0:
            return
        with self._lock:
            self._entries[key] = (time.monotonic() + self._seconds, kek)
            self._entries.move_to_end(key)
            while len(self._entries) > CACHE_ENTRIES:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_ACTIVE_KEKS = "vault.active_keks"
# Ids of the keys this session created, committed or not.
_CREATED_KEKS = "vault.created_keks"


def _transaction_memo(session: Session) -> dict[str, Kek] | None:
    """Active keys seen in the session's current transaction (or savepoint, which may be
    rolled back on its own); None before it begins."""
    transaction = session.get_nested_transaction() or session.get_transaction()
    if transaction is None:
        return None
    held = session.info.get(_ACTIVE_KEKS)
    if held is None or held[0] is not transaction:
        held = (transaction, {})
        session.info[_ACTIVE_KEKS] = held
    memo: dict[str, Kek] = held[1]
    return memo
