"""All ORM models, imported together so that mappers and Alembic see the whole schema."""

from vault.models.access import AccessPolicy, AccessPolicyEntry, CaregiverInvitation
from vault.models.audit import (
    AuditChainHead,
    AuditCheckpoint,
    AuditEntry,
    AuditNotification,
    AuditTreeHead,
    AuditTreeNode,
)
from vault.models.base import Base
from vault.models.document import Binary, Document, DocumentVersion, StoredBlobChunk
from vault.models.export import RecordExport
from vault.models.notification import NotificationContact, NotificationEmail
from vault.models.oauth import OAuthClient, UsedClientAssertion
from vault.models.patient import Patient, PatientKey
from vault.models.record import Opposition, RecordLifecycle
from vault.models.submission import SubmissionSet, SubmissionSetMember
from vault.models.web import WebSession, WebVisitor

__all__ = [
    "AccessPolicy",
    "AccessPolicyEntry",
    "AuditChainHead",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditNotification",
    "AuditTreeHead",
    "AuditTreeNode",
    "Base",
    "Binary",
    "CaregiverInvitation",
    "Document",
    "DocumentVersion",
    "NotificationContact",
    "NotificationEmail",
    "OAuthClient",
    "Opposition",
    "Patient",
    "PatientKey",
    "RecordExport",
    "RecordLifecycle",
    "StoredBlobChunk",
    "SubmissionSet",
    "SubmissionSetMember",
    "UsedClientAssertion",
    "WebSession",
    "WebVisitor",
]
