"""Export jobs: asked for over HTTP, built by a background worker, downloaded once ready.

- **Asked**: ``RECORD_EXPORT`` decided and audited for the requester (the patient, or a
  minor's legal representative); at most one export in progress per record and
  ``export_daily_limit`` per record per day (the patient's row is locked while counting, so
  two simultaneous requests cannot both pass).
- **Built**: by ``ExportWorker`` (each ``vault serve`` process runs one; ``vault exports
  build`` from the command line), as the requester, each read decided and audited
  (``vault/exports/archive.py``). The archive is sealed while written under a fresh data
  key wrapped by the patient's key. A worker that dies leaves its lease to run out; the
  next one builds again from the start. Built is audited too, and that entry tells the
  patient, through the notification outbox, that the export is ready.
- **Downloaded**: by the requester only (anyone else gets 404, as for what does not
  exist), until ``expires_at``; each download decided and audited. Expired archives are
  deleted by the worker, and their keys with them.
- **Followed**: a job's status and the requester's latest jobs are decided for each
  request, refusals audited, but not each granted one (``_authorize_progress`` says why).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from vault.access.permissions import Permission
from vault.access.policy import Actor, author_of
from vault.access.records import AuditRecord, Outcome
from vault.access.repository import PolicySnapshots
from vault.access.service import AccessService, caregiver_key
from vault.db import Session, SessionFactory, unit_of_work
from vault.documents import repository as documents_repository
from vault.errors import Conflict, Gone, NotFound, TooManyRequests
from vault.exports import repository
from vault.exports.archive import ArchiveBuilder, archive_context
from vault.identity.principal import Principal, Role
from vault.identity.scopes import format_scope, parse_scopes
from vault.models import RecordExport
from vault.models.base import as_utc, utcnow
from vault.patients import repository as patients_repository
from vault.storage import crypto
from vault.storage.envelope import dek_context
from vault.storage.keys.service import KeyService

log = logging.getLogger("vault.exports")

IN_PROGRESS = ("queued", "building")
READ_SIZE = 64 * 1024


class ExportNotReady(Conflict):
    """The archive is not built yet: the job's status says how far it is."""


@dataclass(frozen=True)
class Download:
    size: int
    chunks: Iterator[bytes]
    file_name: str


class ExportService:
    def __init__(
        self,
        access: AccessService,
        keys: KeyService,
        directory: Path,
        *,
        ttl_hours: int,
        daily_limit: int,
    ) -> None:
        self.access = access
        self._keys = keys
        self.directory = directory
        self._ttl = timedelta(hours=ttl_hours)
        self._daily = daily_limit

    def path_of(self, export_id: str) -> Path:
        return self.directory / f"{export_id}.zip.sealed"

    def _authorize(
        self, session: Session, actor: Actor, patient_id: str, stage: str, export_id: str | None
    ) -> None:
        self.access.authorize(
            session,
            actor,
            Permission.RECORD_EXPORT,
            patient_id,
            resource_type="Patient",
            resource_id=patient_id,
            detail={"stage": stage, **({"export": export_id} if export_id else {})},
            not_found_as="Patient",
        )

    def request(self, session: Session, actor: Actor, patient_id: str) -> RecordExport:
        if patients_repository.lock(session, patient_id) is None:
            # Refused as another's record is, at the same cost (docs/threat-model.md).
            raise self.access.refuse_unknown(
                session,
                actor,
                Permission.RECORD_EXPORT,
                resource_type="Patient",
                resource_id=patient_id,
                detail={"stage": "requested"},
                not_found_as="Patient",
            )
        self._authorize(session, actor, patient_id, "requested", None)
        now = utcnow()
        running = repository.count_in(session, patient_id, IN_PROGRESS)
        if running:
            raise Conflict("An export of this record is already in progress")
        today = repository.count_since(session, patient_id, now - timedelta(days=1))
        if (today or 0) >= self._daily:
            raise TooManyRequests(
                f"At most {self._daily} exports of a record per day", retry_after=3600
            )
        kind, identifier = author_of(actor)
        principal = actor.principal
        job = RecordExport(
            patient_id=patient_id,
            requester_role=principal.role.value,
            requester_kind=kind,
            requester_id=identifier,
            requester_record=actor.own_patient_id,
            requester_scopes=" ".join(format_scope(scope) for scope in principal.scopes)[:1024],
            requester_issuer=principal.issuer,
            status="queued",
            progress=0,
            requested_at=now,
        )
        session.add(job)
        session.flush()
        return job

    def _own(self, session: Session, actor: Actor, patient_id: str, export_id: str) -> RecordExport:
        """The job, for the person who asked for it; anyone else finds nothing."""
        job = session.get(RecordExport, {"patient_id": patient_id, "id": export_id})
        kind, identifier = author_of(actor)
        if (
            job is None
            or job.patient_id != patient_id
            or (job.requester_kind, job.requester_id) != (kind, identifier)
        ):
            raise NotFound("Export not found")
        return job

    def _authorize_progress(
        self, session: Session, actor: Actor, patient_id: str, stage: str, export_id: str | None
    ) -> None:
        # Following a job is decided as asking for it is, but a granted one is not put on
        # record: the patient's page (and a patient's app) asks again every few seconds
        # while the archive is built, and each answer is only the requester's own job --
        # its status, progress, size and number of documents, the last two already in the
        # "built" entry -- never a document, the patient's identity or their policy. The
        # log is the patient's account of who saw their health data; what does show it is
        # recorded: the request, every read of the build, the build and each download. A
        # refusal is recorded as every refusal is.
        self.access.authorize_unrecorded(
            session,
            actor,
            Permission.RECORD_EXPORT,
            patient_id,
            resource_type="Patient",
            resource_id=patient_id,
            detail={"stage": stage, **({"export": export_id} if export_id else {})},
            not_found_as="Patient",
        )

    def mine(
        self, session: Session, actor: Actor, patient_id: str, limit: int = 5
    ) -> list[RecordExport]:
        """The requester's own latest exports of the record, newest first (the patient's
        page lists them); those of anyone else are not there."""
        self._authorize_progress(session, actor, patient_id, "listed", None)
        kind, identifier = author_of(actor)
        return repository.latest_of(session, patient_id, kind, identifier, limit)

    def status(
        self, session: Session, actor: Actor, patient_id: str, export_id: str
    ) -> RecordExport:
        self._authorize_progress(session, actor, patient_id, "status", export_id)
        return self._own(session, actor, patient_id, export_id)

    def download(self, session: Session, actor: Actor, patient_id: str, export_id: str) -> Download:
        self._authorize(session, actor, patient_id, "downloaded", export_id)
        job = self._own(session, actor, patient_id, export_id)
        if job.status in IN_PROGRESS:
            raise ExportNotReady("The export is not ready yet")
        if (
            job.status != "ready"
            or job.expires_at is None
            or as_utc(job.expires_at) <= utcnow()
            or job.wrapped_dek is None
            or job.kek_id is None
        ):
            raise Gone("This export has expired or failed; ask for a new one")
        path = self.path_of(job.id)
        if not path.is_file():
            # Restored from a backup (archives are not in backups) or removed by hand.
            raise Gone("This export is no longer available; ask for a new one")
        context = archive_context(job.id, job.patient_id)
        kek = self._keys.kek(session, job.patient_id, job.kek_id)
        key = self._keys.unwrap_data_key(kek, job.wrapped_dek, dek_context(context))
        return Download(
            job.archive_size or 0,
            crypto.open_segments(key, _read(path), context, crypto.DEFAULT_SEGMENT_SIZE),
            f"dossier-{job.finished_at:%Y-%m-%d}.zip" if job.finished_at else "dossier.zip",
        )


def _read(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(READ_SIZE):
            yield chunk


def _requester(session: Session, job: RecordExport) -> Actor:
    """The requester again, as the access service knows them: no token is kept, only what
    the decision reads (never an INS: a patient is their record id or their proxy key)."""
    role = Role(job.requester_role)
    principal = Principal(
        role=role,
        subject=job.requester_id if role is not Role.PATIENT else "",
        scopes=parse_scopes(job.requester_scopes),
        issuer=job.requester_issuer,
    )
    proxy = None
    issuer = None
    if job.requester_kind == "proxy":
        proxy = job.requester_id
    elif role is Role.CAREGIVER:
        # As AccessService.actor has it: a caregiver account is the account of one issuer.
        proxy = caregiver_key(job.requester_id)
        issuer = job.requester_issuer
    own = job.requester_record
    return Actor(principal, own, proxy, PolicySnapshots(session), proxy_issuer=issuer)


@dataclass
class ExportStats:
    built: int = 0
    failed: int = 0
    expired: int = 0


class ExportWorker:
    def __init__(
        self,
        factory: SessionFactory,
        service: ExportService,
        builder: ArchiveBuilder,
        keys: KeyService,
        *,
        lease_seconds: float = 3600.0,
    ) -> None:
        self._factory = factory
        self._service = service
        self._builder = builder
        self._keys = keys
        self._lease = timedelta(seconds=lease_seconds)

    def run_once(self, now: datetime | None = None) -> ExportStats:
        stats = ExportStats(expired=self.expire(now or utcnow()))
        while (job := self._claim(now or utcnow())) is not None:
            if self._build(*job):
                stats.built += 1
            else:
                stats.failed += 1
        return stats

    def _claim(self, now: datetime) -> tuple[str, str] | None:
        """The next job to build, as (patient id, export id)."""
        with unit_of_work(self._factory) as session:
            job = repository.next_to_build(session, now)
            if job is None:
                return None
            job.status = "building"
            job.started_at = now
            job.lease_until = now + self._lease
            job.progress = 0
            return job.patient_id, job.id

    def _progress(self, patient_id: str, job_id: str, percent: int) -> None:
        with unit_of_work(self._factory) as session:
            repository.set_fields(session, patient_id, job_id, progress=percent)

    def _build(self, patient_id: str, job_id: str) -> bool:
        with unit_of_work(self._factory) as session:
            job = session.get(RecordExport, {"patient_id": patient_id, "id": job_id})
            assert job is not None
            context = archive_context(job.id, patient_id)
            kek = self._keys.active_kek(session, patient_id)
            key = crypto.new_data_key()
            wrapped, kek_id = self._keys.wrap_data_key(kek, key, dek_context(context)), kek.id
            total = documents_repository.content_bytes(session, patient_id)
            snapshot = _Snapshot(job)
        directory = self._service.directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        final = self._service.path_of(job_id)
        partial = final.with_suffix(".partial")
        last = -1

        def progress(percent: int) -> None:
            nonlocal last
            if percent != last:
                last = percent
                self._progress(patient_id, job_id, percent)

        try:
            with partial.open("wb") as sink:
                result = self._builder.build(
                    sink,
                    key,
                    context,
                    patient_id,
                    lambda session: _requester(session, snapshot.job),
                    progress,
                    total,
                )
                sink.flush()
                os.fsync(sink.fileno())
            partial.replace(final)
        except Exception as error:  # noqa: BLE001 - any failure ends this job, not the worker
            # The class only: a message could name what was being read.
            log.warning("export %s failed: %s", job_id, type(error).__name__)
            partial.unlink(missing_ok=True)
            with unit_of_work(self._factory) as session:
                repository.set_fields(
                    session,
                    patient_id,
                    job_id,
                    status="failed",
                    error=type(error).__name__[:64],
                    lease_until=None,
                )
            return False
        now = utcnow()
        with unit_of_work(self._factory) as session:
            repository.set_fields(
                session,
                patient_id,
                job_id,
                status="ready",
                progress=100,
                documents=result.documents,
                archive_size=result.size,
                wrapped_dek=wrapped,
                kek_id=kek_id,
                finished_at=now,
                expires_at=now + self._service._ttl,
                lease_until=None,
            )
            # Built: on record, and the patient is told (an export-ready notification).
            self._service.access.record(
                session,
                AuditRecord(
                    action="C",
                    outcome=Outcome.SUCCESS,
                    purpose="PATRQT",
                    principal=None,
                    patient_id=patient_id,
                    resource_type="Patient",
                    resource_id=patient_id,
                    detail={
                        "permission": Permission.RECORD_EXPORT.value,
                        "stage": "built",
                        "export": job_id,
                        "documents": str(result.documents),
                    },
                ),
            )
        return True

    def expire(self, now: datetime) -> int:
        """Delete archives past their time, and their keys."""
        with unit_of_work(self._factory) as session:
            keys = repository.expire_ready(session, now)
        ids = [export_id for _, export_id in keys]
        for export_id in ids:
            self._service.path_of(export_id).unlink(missing_ok=True)
        return len(ids)


@dataclass(frozen=True)
class _Snapshot:
    """The job's requester facts, read once, used by every transaction of the build."""

    job: RecordExport
