"""Building an export archive: a zip, streamed straight into its encrypted file.

Layout (docs/lifecycle.md):

- ``documents/<date>_<type>_<title>.<ext>``: each document the requester may see, its
  original bytes;
- ``bundle.json``: a FHIR R4 ``collection`` Bundle: the Patient, each DocumentReference
  (its attachment pointing at the file above), the access policy as Consents, the access
  history as AuditEvents;
- ``history/entries.jsonl``: the history's audit entries as the log holds them, each with
  its RFC 9162 inclusion proof; ``history/checkpoint.txt``: the signed checkpoint the proofs
  lead to; ``history/verifier-key.txt``: the key that signed it;
- ``index.html``: a page to browse the archive offline.

Memory stays flat whatever the record's size: content streams from the blob store through
decryption into the zip and through encryption to disk, a segment at a time. What is held
is the DocumentReferences' metadata (a few kilobytes per document).

Every read goes through the access service as the requester: each document's metadata and
content, the Patient, the policy and each page of the history is decided and audited, in
one short transaction per document so that the patient's audit chain is never held long.
"""

from __future__ import annotations

import base64
import html
import json
import mimetypes
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from vault.access.policy import Actor
from vault.access.service import AccessService
from vault.audit.events import audit_event
from vault.audit.export import export_record
from vault.audit.history import AuditHistory
from vault.audit.wiring import AuditLog
from vault.db import Session, SessionFactory, unit_of_work
from vault.documents import repository as documents_repository
from vault.documents.service import DocumentService
from vault.models import AuditCheckpoint, AuditEntry
from vault.patients.service import PatientService
from vault.policies.consent import consents
from vault.policies.management import PolicyService
from vault.storage import crypto

HISTORY_PAGE = 500
DOCUMENT_PAGE = 50


@dataclass
class Exported:
    """What the archive holds of one document, for the Bundle and the index."""

    file_name: str
    title: str
    date: str
    kind: str
    resource: dict[str, Any]


@dataclass
class BuildResult:
    documents: int
    history_entries: int
    tree_size: int
    size: int = 0
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Readers:
    access: AccessService
    documents: DocumentService
    patients: PatientService
    policies: PolicyService
    history: AuditHistory
    audit_log: AuditLog


def archive_context(export_id: str, patient_id: str) -> bytes:
    return crypto.associated_data("RecordExport", export_id, patient_id)


def _slug(text: str, limit: int = 60) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", ascii_text).strip("-").lower()
    return slug[:limit].strip("-") or "document"


def _display(resource: dict[str, Any]) -> tuple[str, str, str]:
    """(date, type, title) as a person would name the document."""
    date = str(resource.get("date") or resource.get("meta", {}).get("lastUpdated") or "")[:10]
    codings = (resource.get("type") or {}).get("coding") or [{}]
    kind = str(
        (resource.get("type") or {}).get("text")
        or codings[0].get("display")
        or codings[0].get("code")
        or "document"
    )
    attachment = ((resource.get("content") or [{}])[0]).get("attachment") or {}
    title = str(attachment.get("title") or resource.get("description") or "document")
    return date or "sans-date", kind, title


class _Names:
    def __init__(self) -> None:
        self._taken: set[str] = set()

    def unique(self, stem: str, extension: str) -> str:
        name, number = f"documents/{stem}{extension}", 1
        while name in self._taken:
            number += 1
            name = f"documents/{stem}-{number}{extension}"
        self._taken.add(name)
        return name


class ArchiveBuilder:
    def __init__(self, factory: SessionFactory, readers: Readers, base_url: str) -> None:
        self._factory = factory
        self._readers = readers
        self._base = base_url.rstrip("/")

    def build(
        self,
        sink: IO[bytes],
        key: bytes,
        context: bytes,
        patient_id: str,
        actor_in: Callable[[Session], Actor],
        progress: Callable[[int], None],
        total_bytes: int,
    ) -> BuildResult:
        sealer = crypto.SegmentSealer(sink, key, context)
        counter = _Counting(sealer)
        with zipfile.ZipFile(counter, "w") as archive:
            exported = self._documents(archive, patient_id, actor_in, progress, total_bytes)
            checkpoint = self._readers.audit_log.checkpoints.make_for_chain(
                self._factory, patient_id
            )
            size = checkpoint.tree_size if checkpoint is not None else 0
            entries = self._history_file(archive, patient_id, actor_in, checkpoint)
            self._bundle(archive, patient_id, actor_in, exported, size)
            self._index(archive, exported, entries, size)
        sealer.close()
        return BuildResult(len(exported), entries, size, counter.written)

    # -- documents --------------------------------------------------------------------

    def _documents(
        self,
        archive: zipfile.ZipFile,
        patient_id: str,
        actor_in: Callable[[Session], Actor],
        progress: Callable[[int], None],
        total_bytes: int,
    ) -> list[Exported]:
        names = _Names()
        exported: list[Exported] = []
        done = 0
        after: tuple[datetime, str] | None = None
        query = documents_repository.search_query(documents_repository.SearchCriteria(patient_id))
        while True:
            with unit_of_work(self._factory) as session:
                page = list(documents_repository.page_after(session, query, after, DOCUMENT_PAGE))
            if not page:
                return exported
            after = (page[-1].created_at, page[-1].id)
            for document in page:
                with unit_of_work(self._factory) as session:
                    one = self._document(
                        archive, session, actor_in(session), patient_id, document.id, names
                    )
                if one is not None:
                    exported.append(one[0])
                    done += one[1]
                    progress(min(99, done * 100 // max(total_bytes, 1)))

    def _document(
        self,
        archive: zipfile.ZipFile,
        session: Session,
        actor: Actor,
        patient_id: str,
        document_id: str,
        names: _Names,
    ) -> tuple[Exported, int] | None:
        readers = self._readers
        # Skipped without a trace, as a search leaves out what it may not show: only the
        # reads below are accesses.
        document = readers.documents.readable(session, actor, document_id)
        if document is None:
            return None
        resource = readers.documents.read(session, actor, document.id)
        version = documents_repository.version(
            session, document.patient_id, document.id, document.current_version
        )
        if version is None:
            return None
        content = readers.documents.content(session, actor, version.binary_id)
        date, kind, title = _display(resource)
        extension = mimetypes.guess_extension(content.content_type.split(";")[0].strip()) or ".bin"
        name = names.unique(f"{date}_{_slug(kind, 30)}_{_slug(title)}", extension)
        info = zipfile.ZipInfo(name, date_time=_zip_time(document.created_at))
        # Documents are mostly compressed formats already (PDF, JPEG): stored as they are.
        info.compress_type = zipfile.ZIP_STORED
        written = 0
        with archive.open(info, "w", force_zip64=True) as out:
            for chunk in content.chunks:
                out.write(chunk)
                written += len(chunk)
        pointed = json.loads(json.dumps(resource))
        for item in pointed.get("content") or []:
            attachment = item.get("attachment") or {}
            attachment.pop("data", None)
            attachment["url"] = name
        return Exported(name, title, date, kind, pointed), written

    # -- history ------------------------------------------------------------------------

    def _history_pages(
        self, patient_id: str, actor_in: Callable[[Session], Actor], size: int
    ) -> Iterator[tuple[Session, list[AuditEntry]]]:
        """The history the requester may read, newest first, down to what the checkpoint
        holds (the export's own later reads are in the next one)."""
        cursor: str | None = None
        while True:
            with unit_of_work(self._factory) as session:
                page = self._readers.history.page(
                    session, actor_in(session), patient_id, HISTORY_PAGE, cursor
                )
                placed = [
                    entry
                    for entry in page.entries
                    if entry.leaf_index is not None and entry.leaf_index < size
                ]
                yield session, placed
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def _history_file(
        self,
        archive: zipfile.ZipFile,
        patient_id: str,
        actor_in: Callable[[Session], Actor],
        checkpoint: AuditCheckpoint | None,
    ) -> int:
        size = checkpoint.tree_size if checkpoint is not None else 0
        log = checkpoint.log_id if checkpoint is not None else 0
        count = 0
        with archive.open("history/entries.jsonl", "w", force_zip64=True) as out:
            for session, entries in self._history_pages(patient_id, actor_in, size):
                proofs = self._readers.audit_log.tree.inclusion_proofs(
                    session, [entry.leaf_index or 0 for entry in entries], size, log
                )
                for entry, proof in zip(entries, proofs, strict=True):
                    line = {
                        "entry": export_record(entry),
                        "proof": [base64.b64encode(node).decode() for node in proof],
                    }
                    out.write(
                        json.dumps(line, sort_keys=True, separators=(",", ":")).encode() + b"\n"
                    )
                    count += 1
        if checkpoint is not None:
            archive.writestr("history/checkpoint.txt", checkpoint.note)
            verifier = self._readers.audit_log.checkpoints.key.signer().verifier
            archive.writestr("history/verifier-key.txt", verifier.verifier_key + "\n")
        return count

    # -- the Bundle and the index ------------------------------------------------------

    def _bundle(
        self,
        archive: zipfile.ZipFile,
        patient_id: str,
        actor_in: Callable[[Session], Actor],
        exported: list[Exported],
        size: int,
    ) -> None:
        info = zipfile.ZipInfo("bundle.json")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w", force_zip64=True) as out:
            out.write(b'{"resourceType":"Bundle","type":"collection","entry":[')
            first = True

            def put(resource: dict[str, Any]) -> None:
                nonlocal first
                url = f"{self._base}/fhir/{resource['resourceType']}/{resource.get('id', '')}"
                entry = {"fullUrl": url, "resource": resource}
                out.write((b"" if first else b",") + json.dumps(entry, ensure_ascii=False).encode())
                first = False

            with unit_of_work(self._factory) as session:
                actor = actor_in(session)
                put(self._readers.patients.read(session, actor, patient_id))
                policy = self._readers.policies.view(session, actor, patient_id)
                for consent in consents(policy):
                    put(consent)
            for one in exported:
                put(one.resource)
            for _, entries in self._history_pages(patient_id, actor_in, size):
                for entry in entries:
                    put(audit_event(entry, self._base))
            out.write(b"]}")

    def _index(
        self, archive: zipfile.ZipFile, exported: list[Exported], entries: int, size: int
    ) -> None:
        rows = "".join(
            f"<tr><td>{html.escape(one.date)}</td><td>{html.escape(one.kind)}</td>"
            f'<td><a href="{html.escape(one.file_name)}">{html.escape(one.title)}</a></td></tr>'
            for one in exported
        )
        page = (
            '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
            "<title>Mon dossier</title></head><body><main><h1>Mon dossier</h1>"
            f"<p>{len(exported)} document(s). Les données au format FHIR sont dans "
            '<a href="bundle.json">bundle.json</a>; l\'historique des accès, '
            f"{entries} entrée(s) et leurs preuves (point de contrôle signé de {size} entrées), "
            'dans <a href="history/entries.jsonl">history/</a>.</p>'
            "<table><thead><tr><th>Date</th><th>Type</th><th>Document</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></main></body></html>"
        )
        archive.writestr("index.html", page)


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    return (
        max(moment.year, 1980),
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
    )


class _Counting:
    """A write-only stream (so zipfile writes data descriptors, never seeking back) that
    counts what passes to the sealer."""

    def __init__(self, sink: crypto.SegmentSealer) -> None:
        self._sink = sink
        self.written = 0

    def write(self, data: bytes) -> int:
        self._sink.write(data)
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        self._sink.flush()

    def close(self) -> None:
        # The sealer is closed by the builder, once the zip's directory is written.
        pass
