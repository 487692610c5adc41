"""All ORM models, imported together so that mappers and Alembic see the whole schema."""

from vault.models.audit import AuditChainHead, AuditEntry
from vault.models.base import Base
from vault.models.document import Binary, Document, DocumentVersion, StoredBlobChunk
from vault.models.patient import Patient, PatientKey

__all__ = [
    "AuditChainHead",
    "AuditEntry",
    "Base",
    "Binary",
    "Document",
    "DocumentVersion",
    "Patient",
    "PatientKey",
    "StoredBlobChunk",
]
