from __future__ import annotations

from enum import StrEnum

from vault.identity.scopes import Interaction


class Permission(StrEnum):
    DOCUMENT_CREATE = "document:create"
    DOCUMENT_READ = "document:read"
    DOCUMENT_SEARCH = "document:search"
    DOCUMENT_CONTENT = "document:content"
    DOCUMENT_UPDATE = "document:update"
    DOCUMENT_DELETE = "document:delete"
    PATIENT_CREATE = "patient:create"
    PATIENT_READ = "patient:read"
    AUDIT_READ = "audit:read"
    # The patient's access policy (docs/access.md).
    POLICY_READ = "policy:read"
    POLICY_MANAGE = "policy:manage"
    DELEGATION_GRANT = "delegation:grant"
    DELEGATION_REVOKE = "delegation:revoke"
    # A caregiver taking up the delegation an invitation offers them.
    INVITATION_ACCEPT = "invitation:accept"
    # Professionals' declarations: emergency access, and consent given at the point of care.
    EMERGENCY_DECLARE = "emergency:declare"
    CONSENT_DECLARE = "consent:declare"
    # The patient's own settings and rights over the record (docs/lifecycle.md): where and
    # about what they are told by e-mail, and taking everything away (export).
    NOTIFICATIONS_READ = "notifications:read"
    NOTIFICATIONS_MANAGE = "notifications:manage"
    RECORD_EXPORT = "record:export"
    # The record's lifetime (docs/lifecycle.md): where it stands, closing it, asking for its
    # deletion before the retention period ends, reopening it.
    RECORD_STATUS = "record:status"
    RECORD_CLOSE = "record:close"
    RECORD_DELETE = "record:delete"
    RECORD_REOPEN = "record:reopen"


# The FHIR resource and SMART interaction a permission needs from the token's scopes. The
# patient's policy is exposed as Consent resources, so Consent scopes govern it.
SCOPE_NEEDED: dict[Permission, tuple[str, Interaction]] = {
    Permission.DOCUMENT_CREATE: ("DocumentReference", Interaction.CREATE),
    Permission.DOCUMENT_READ: ("DocumentReference", Interaction.READ),
    Permission.DOCUMENT_SEARCH: ("DocumentReference", Interaction.SEARCH),
    Permission.DOCUMENT_CONTENT: ("Binary", Interaction.READ),
    Permission.DOCUMENT_UPDATE: ("DocumentReference", Interaction.UPDATE),
    Permission.DOCUMENT_DELETE: ("DocumentReference", Interaction.DELETE),
    Permission.PATIENT_CREATE: ("Patient", Interaction.CREATE),
    Permission.PATIENT_READ: ("Patient", Interaction.READ),
    Permission.AUDIT_READ: ("AuditEvent", Interaction.SEARCH),
    Permission.POLICY_READ: ("Consent", Interaction.READ),
    Permission.POLICY_MANAGE: ("Consent", Interaction.UPDATE),
    Permission.DELEGATION_GRANT: ("Consent", Interaction.CREATE),
    Permission.DELEGATION_REVOKE: ("Consent", Interaction.UPDATE),
    Permission.INVITATION_ACCEPT: ("Consent", Interaction.CREATE),
    Permission.EMERGENCY_DECLARE: ("Consent", Interaction.CREATE),
    Permission.CONSENT_DECLARE: ("Consent", Interaction.CREATE),
    Permission.NOTIFICATIONS_READ: ("Patient", Interaction.READ),
    Permission.NOTIFICATIONS_MANAGE: ("Patient", Interaction.UPDATE),
    Permission.RECORD_EXPORT: ("Patient", Interaction.READ),
    Permission.RECORD_STATUS: ("Patient", Interaction.READ),
    Permission.RECORD_CLOSE: ("Patient", Interaction.UPDATE),
    Permission.RECORD_DELETE: ("Patient", Interaction.DELETE),
    Permission.RECORD_REOPEN: ("Patient", Interaction.UPDATE),
}

# Audit action codes (FHIR restful interactions, BALP): C create, R read, U update,
# D delete, E execute (search).
AUDIT_ACTION: dict[Permission, str] = {
    Permission.DOCUMENT_CREATE: "C",
    Permission.DOCUMENT_READ: "R",
    Permission.DOCUMENT_SEARCH: "E",
    Permission.DOCUMENT_CONTENT: "R",
    Permission.DOCUMENT_UPDATE: "U",
    Permission.DOCUMENT_DELETE: "D",
    Permission.PATIENT_CREATE: "C",
    Permission.PATIENT_READ: "R",
    Permission.AUDIT_READ: "E",
    Permission.POLICY_READ: "R",
    Permission.POLICY_MANAGE: "U",
    Permission.DELEGATION_GRANT: "C",
    Permission.DELEGATION_REVOKE: "D",
    Permission.INVITATION_ACCEPT: "C",
    Permission.EMERGENCY_DECLARE: "C",
    Permission.CONSENT_DECLARE: "C",
    Permission.NOTIFICATIONS_READ: "R",
    Permission.NOTIFICATIONS_MANAGE: "U",
    Permission.RECORD_EXPORT: "C",
    Permission.RECORD_STATUS: "R",
    Permission.RECORD_CLOSE: "U",
    Permission.RECORD_DELETE: "D",
    Permission.RECORD_REOPEN: "U",
}
