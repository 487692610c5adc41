from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from vault.models.base import Base, new_id, utcnow


class AccessPolicy(Base):
    """A patient's access policy: its version number, bumped by every change. Its row lock
    serialises changes to one patient's policy."""

    __tablename__ = "access_policies"

    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), primary_key=True
    )
    version: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AccessPolicyEntry(Base):
    """One relationship in a patient's policy (treating doctor, care team member, block,
    delegation, legal representative, point-of-care consent, emergency access, emergency
    opt-out). Rows are never deleted or rewritten: ending one stamps ``ended_at`` and the
    policy version that ended it, so the policy as it stood at any version can be rebuilt.

    ``subject`` is a professional's IDNPS, or for delegations and representations the
    grantee's key (``caregiver:<account id>`` or ``ins:<keyed blind index of the INS>``,
    never an INS in clear); ``issuer`` says who vouches for a caregiver account.
    """

    __tablename__ = "access_policy_entries"
    __table_args__ = (
        PrimaryKeyConstraint("patient_id", "id"),
        Index("ix_access_policy_entries_patient_open", "patient_id", "ended_at"),
        Index("ix_access_policy_entries_subject_kind", "subject", "kind"),
    )

    id: Mapped[str] = mapped_column(String(64), default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(160), default=None)
    # The issuer that vouches for ``subject`` (a caregiver account's), or None for a
    # national identifier (IDNPS, INS) or no subject: docs/access.md, "Who an entry names".
    issuer: Mapped[str | None] = mapped_column(String(255), default=None)
    # Delegations: read | read-upload. Emergency accesses: break-glass | samu-regulation.
    scope: Mapped[str | None] = mapped_column(String(32), default=None)
    # Delegations: the document category tokens it covers ("*" for all).
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    starts_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    version_added: Mapped[int]
    version_ended: Mapped[int | None] = mapped_column(default=None)
    created_by_role: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(160))
    ended_by_role: Mapped[str | None] = mapped_column(String(32), default=None)
    ended_by: Mapped[str | None] = mapped_column(String(160), default=None)
    # An emergency access's written reason may describe the patient's condition: it is
    # sealed under the patient's keys like any health data.
    note_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    note_dek: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    note_kek_id: Mapped[str | None] = mapped_column(String(64), default=None)


class CaregiverInvitation(Base):
    """A delegation offered by the patient (or a minor's representative) before anyone
    holds it: what it allows, until when, and the hash of its one-time code. Accepting it
    creates the delegation, bound to the identity that accepted, and uses the code up."""

    __tablename__ = "caregiver_invitations"
    __table_args__ = (PrimaryKeyConstraint("patient_id", "id"),)

    id: Mapped[str] = mapped_column(String(64), default=new_id)
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), index=True
    )
    # SHA-256 of the code: the code itself is shown once, to the patient, and never kept.
    # Unique across patients through invitation_codes, which is how a code is found.
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    scope: Mapped[str] = mapped_column(String(32))
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    # When the delegation it creates ends (at most a year after the invitation).
    delegation_expires_at: Mapped[datetime]
    # When the code stops being accepted.
    code_expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_role: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[str] = mapped_column(String(160))
    accepted_at: Mapped[datetime | None] = mapped_column(default=None)
    # The delegation it became.
    delegation_id: Mapped[str | None] = mapped_column(String(64), default=None)
