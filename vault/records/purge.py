"""``vault records purge``: crypto-shredding the records whose time has come.

A closed record is due at the end of its retention period, or sooner once its patient asked
for early deletion (``deletion_due_at``). Each due record is purged in one transaction:

1. every document is left as ``DocumentService.delete`` leaves one (its data keys
   destroyed, its tombstone kept, so that a restored backup replays the deletion);
2. the record's key-encryption keys are deleted: nothing they wrapped (the Patient
   resource, every version, every content, the SubmissionSets, the policy's sealed notes,
   the e-mail address) can be decrypted again, by anyone, with any key the vault holds;
3. the Patient row stays as a tombstone, its INS index replaced by one no INS has (the
   person may be given a new, empty space), every policy entry ended;
4. the vault records "deleted", which tells the patient (a ``space-deleted`` notification).

To tell them by e-mail, the address has to outlive the keys a little: when the patient
has a confirmed address, it alone is sealed again under a fresh key before the others go,
and a later run destroys that key too, once the notice has left (or after
``notice_hours``): the record is then ``deleted_at``. Without an address, that is at once.

Idempotent and resumable: a record is claimed by its state (``FOR UPDATE SKIP LOCKED``),
so a run interrupted, repeated or racing another one purges each record exactly once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from vault.access import repository as access_repository
from vault.access.journal import AuditService
from vault.access.permissions import Permission
from vault.db import Session, SessionFactory, unit_of_work
from vault.models.base import as_utc, utcnow
from vault.notifications.contacts import ContactKeys
from vault.records import repository
from vault.records.repository import CLOSED, DELETED
from vault.records.service import vault_record
from vault.storage import crypto
from vault.storage.envelope import dek_context
from vault.storage.keys.service import KeyService

BATCH = 100


@dataclass
class PurgeStats:
    # Records crypto-shredded, documents in them, records whose last key went.
    shredded: int = 0
    documents: int = 0
    completed: int = 0


class Purger:
    def __init__(
        self,
        factory: SessionFactory,
        keys: KeyService,
        contacts: ContactKeys,
        audit: AuditService,
        *,
        notice_hours: int,
    ) -> None:
        self._factory = factory
        self._keys = keys
        self._contacts = contacts
        self._audit = audit
        self._notice = timedelta(hours=notice_hours)

    def pending(self, now: datetime | None = None) -> int:
        with self._factory() as session:
            return repository.count_due(session, now or utcnow())

    def run(
        self, now: datetime | None = None, advance: Callable[[int], None] | None = None
    ) -> PurgeStats:
        moment = now or utcnow()
        stats = PurgeStats()
        for patient_id in self._walk(
            lambda session, after: repository.due_for_shredding(session, moment, after, BATCH)
        ):
            shredded = self._shred(patient_id, moment)
            if shredded is not None:
                documents, completed = shredded
                stats.shredded += 1
                stats.documents += documents
                stats.completed += int(completed)
            if advance is not None:
                advance(1)
        for patient_id in self._walk(
            lambda session, after: repository.awaiting_completion(session, after, BATCH)
        ):
            if self._complete(patient_id, moment):
                stats.completed += 1
            if advance is not None:
                advance(1)
        if stats.shredded or stats.completed:
            # This process's copies of the destroyed keys go too.
            self._keys.forget()
        return stats

    def _walk(self, query: Callable[[Session, str], Sequence[str]]) -> Iterator[str]:
        """Every id the query lists, in order, a batch at a time (each batch listed after
        the previous one was handled), each once."""
        after = ""
        while True:
            with self._factory() as session:
                batch = list(query(session, after))
            yield from batch
            if len(batch) < BATCH:
                return
            after = batch[-1]

    def _shred(self, patient_id: str, now: datetime) -> tuple[int, bool] | None:
        """(documents shredded, whether the record is completely gone), or None when it
        was not this run's to purge."""
        with unit_of_work(self._factory) as session:
            # The record's row first, as closing, deleting and reopening lock it: one order,
            # no deadlock with a reopening at the same moment.
            patient = repository.lock_patient(session, patient_id)
            row = repository.claim(session, patient_id, CLOSED)
            if (
                patient is None
                or row is None
                or row.deletion_due_at is None
                or as_utc(row.deletion_due_at) > now
            ):
                return None
            documents = repository.shred_documents(session, patient_id, now)
            farewell = self._keep_address(session, patient_id)
            repository.destroy_keys(session, patient_id, keep=farewell)
            repository.forget_patient(session, patient)
            version = access_repository.next_version(session, patient_id, now)
            repository.end_every_entry(session, patient_id, version, now)
            repository.stop_exports(session, patient_id)
            row.status = DELETED
            row.shredded_at = now
            row.deleted_at = None if farewell else now
            row.updated_at = now
            session.flush()
            self._audit.append(
                session,
                vault_record(
                    Permission.RECORD_DELETE,
                    patient_id,
                    {
                        "stage": "deleted",
                        "ground": "requested" if row.deletion_requested_at else "retention",
                        "documents": str(documents),
                    },
                ),
            )
            return documents, farewell is None

    def _keep_address(self, session: Session, patient_id: str) -> str | None:
        """A confirmed address, sealed again under a fresh key that outlives the others
        until the notice has left; None when there is none to keep (and then the contact
        goes at once)."""
        contact = repository.contact(session, patient_id)
        address = None
        if contact is not None and contact.confirmed_at is not None:
            address = self._contacts.address(session, contact)
        if contact is None or address is None:
            repository.drop_contact(session, patient_id)
            return None
        kek = self._keys.create_kek(session, patient_id)
        session.flush()
        context = crypto.associated_data("NotificationContact", patient_id, contact.version)
        data_key = crypto.new_data_key()
        contact.address_ciphertext = crypto.seal(
            data_key, json.dumps({"address": address}).encode(), context
        )
        contact.address_dek = self._keys.wrap_data_key(kek, data_key, dek_context(context))
        contact.kek_id = kek.id
        contact.updated_at = utcnow()
        session.flush()
        return kek.id

    def _complete(self, patient_id: str, now: datetime) -> bool:
        with unit_of_work(self._factory) as session:
            row = repository.claim(session, patient_id, DELETED)
            if row is None or row.deleted_at is not None:
                return False
            shredded = as_utc(row.shredded_at or now)
            if repository.notice_pending(session, patient_id) and now < shredded + self._notice:
                return False
            repository.drop_contact(session, patient_id)
            repository.destroy_keys(session, patient_id)
            row.deleted_at = now
            row.updated_at = now
            session.flush()
            self._audit.append(
                session,
                vault_record(Permission.RECORD_DELETE, patient_id, {"stage": "completed"}),
            )
            return True
