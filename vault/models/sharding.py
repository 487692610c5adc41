"""Every table of the schema, classified for sharding by patient (docs/scaling.md).

- **patient-owned**: rows that belong to one patient; the table would be distributed by
  its patient column (Citus), so that column leads its primary key and every unique
  constraint or unique index, and every foreign key to another patient-owned table
  carries it. ``patients`` is distributed by its own ``id``; the audit log's entries and
  chain heads by their chain key (a patient's id, or the one chain of entries that name
  no patient), so a patient's chain stays with the patient.
- **per log**: the audit logs' Merkle trees (docs/audit.md): each chain belongs to one of a
  fixed number of logs, and each log's tree tables would be distributed by ``log_id``,
  co-located with each other: one tree per shard. ``log_id`` leads their primary key and
  every unique constraint or unique index.
- **reference**: small global lookups from an identifier unique across patients to the
  patient that owns it; replicated to every node.
- **global**: not a patient's, each with the reason why.

``tests/models/test_schema_rule.py`` checks the migrated database against this list and
fails on a table that is missing from it or breaks the rule.
"""

from __future__ import annotations

from typing import Final

# Table -> the column it would be distributed by.
PATIENT_OWNED: Final[dict[str, str]] = {
    "patients": "id",
    "patient_keys": "patient_id",
    "documents": "patient_id",
    "document_versions": "patient_id",
    "binaries": "patient_id",
    "submission_sets": "patient_id",
    "submission_set_members": "patient_id",
    "access_policies": "patient_id",
    "access_policy_entries": "patient_id",
    "caregiver_invitations": "patient_id",
    "notification_contacts": "patient_id",
    "record_exports": "patient_id",
    "record_lifecycles": "patient_id",
    # A patient's chain of audit entries, or the chain of entries that name no patient.
    "audit_entries": "chain_key",
    "audit_chain_heads": "chain_key",
}

# Table -> why it is kept per audit log rather than per patient.
PER_LOG: Final[dict[str, str]] = {
    "audit_tree_head": "each log's tree size: one row per log, whose lock orders its extenders",
    "audit_tree_nodes": (
        "each log's Merkle tree spans the entries of many patients (every chain assigned "
        "to the log): its nodes stay together, co-located with the log's head and checkpoints"
    ),
    "audit_checkpoints": "each log's signed tree heads, co-located with its tree",
}

# Table -> what it resolves.
REFERENCE: Final[dict[str, str]] = {
    "patient_ins": "an INS blind index to the patient whose record it is",
    "resource_patients": (
        "a document's, binary's or SubmissionSet's id to its patient, for the FHIR reads "
        "by id (GET /fhir/DocumentReference/{id}, /fhir/Binary/{id}, /fhir/List/{id})"
    ),
    "invitation_codes": "a caregiver invitation's code hash to the patient who invited",
}

# Table -> why it is not a patient's.
GLOBAL: Final[dict[str, str]] = {
    "alembic_version": "the migrations' bookkeeping",
    "oauth_clients": "registered professional software, not a patient's",
    "oauth_used_assertions": "client assertions seen, per client",
    "web_sessions": "a browser's session, keyed by a hash of its id, before any patient is known",
    "web_visitors": (
        "keyed by a blind index of whoever signed in (a professional or caregiver may have "
        "no record)"
    ),
    "record_oppositions": (
        "a person who opposed the creation of their space has no record: keyed by the INS "
        "blind index alone"
    ),
    "audit_notifications": (
        "a work queue: the delivery workers claim due rows across patients with FOR UPDATE "
        "SKIP LOCKED, which a distributed table does not offer; each row names its patient"
    ),
    "notification_emails": (
        "a work queue, claimed across patients like audit_notifications; each row names its patient"
    ),
    "blob_chunks": (
        "the db: blob store's ciphertext, addressed by blob key as an object store is; "
        "at sharding scale the blobs are in the object store (s3://)"
    ),
}
