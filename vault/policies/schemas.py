"""The access policy API's request and response bodies (JSON, camelCase)."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from vault.access.state import (
    DelegationScope,
    EmergencyMode,
    EntryKind,
    ProtectionMeasure,
    Verb,
)
from vault.models import AccessPolicyEntry, CaregiverInvitation
from vault.policies.consent import grantee_identifier, professional_identifier
from vault.policies.management import DelegationsView, PolicyEvent, PolicyView


class Body(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class Identifier(Body):
    system: str = Field(min_length=1, max_length=256)
    value: str = Field(min_length=1, max_length=128, pattern=r"^\S+$")


class ProfessionalRequest(Body):
    professional: Identifier = Field(
        description="IDNPS (urn:oid:1.2.250.1.71.4.2.1) or RPPS (https://rpps.esante.gouv.fr)"
    )


class DelegationRequest(Body):
    caregiver: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^\S+$",
        description="The caregiver's account identifier (the subject of their caregiver token)",
    )
    issuer: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="The issuer of that account (a trusted issuer's URL); default: the "
        "vault's own issuer. A token with the same subject from another issuer does not match",
    )
    scope: DelegationScope
    categories: list[str] = Field(
        description="Document category codes (TRE_A03 class codes, or system|code) the "
        "caregiver may see; ['*'] for all"
    )
    expires: AwareDatetime = Field(description="Mandatory, at most one year ahead")


class MeasureIn(Body):
    type: ProtectionMeasure = Field(description="The legal protection measure")
    reference: str = Field(
        min_length=1,
        max_length=128,
        description="The court decision or notarial deed establishing it (kept sealed)",
    )


class RepresentativeRequest(Body):
    representative: Identifier = Field(
        description="A caregiver account (urn:vault:caregiver) or a person's INS"
    )
    issuer: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="For a caregiver account, its issuer; default: the vault's own issuer",
    )
    measure: MeasureIn | None = Field(
        default=None,
        description="Required for an adult: the protection measure the representation rests "
        "on. A minor's record (from its birth date) needs none",
    )
    until: AwareDatetime | None = Field(
        default=None, description="When the representation ends (the child's majority)"
    )


class MaskRequest(Body):
    document: str = Field(min_length=1, max_length=64, description="The DocumentReference id")


class EmergencyRefusalRequest(Body):
    refused: bool


class EmergencyRequest(Body):
    reason: str = Field(
        min_length=1, max_length=2000, description="Why: required, shown to the patient"
    )
    mode: EmergencyMode = EmergencyMode.BREAK_GLASS


class PointOfCareRequest(Body):
    patient_informed: bool
    patient_agreed: bool


class EntryOut(Body):
    id: str
    kind: EntryKind
    professional: Identifier | None = None
    grantee: Identifier | None = None
    # The issuer vouching for a caregiver account named as grantee.
    grantee_issuer: str | None = None
    scope: str | None = None
    categories: list[str] | None = None
    since: datetime
    expires: datetime | None = None
    reason: str | None = None
    version: int

    @classmethod
    def of(cls, row: AccessPolicyEntry, reason: str | None = None) -> EntryOut:
        kind = EntryKind(row.kind)
        professional = grantee = None
        if row.subject is not None and kind in (EntryKind.DELEGATION, EntryKind.REPRESENTATIVE):
            grantee = Identifier(**grantee_identifier(row.subject))
        elif row.subject is not None:
            professional = Identifier(**professional_identifier(row.subject))
        return cls(
            id=row.id,
            kind=kind,
            professional=professional,
            grantee=grantee,
            grantee_issuer=row.issuer,
            scope=row.scope,
            categories=list(row.categories) if kind is EntryKind.DELEGATION else None,
            since=row.starts_at,
            expires=row.expires_at,
            reason=reason,
            version=row.version_added,
        )


class PolicyOut(Body):
    patient: str
    version: int
    treating_doctor: EntryOut | None
    care_team: list[EntryOut]
    point_of_care: list[EntryOut]
    blocked: list[EntryOut]
    delegations: list[EntryOut]
    representatives: list[EntryOut]
    emergency_access_refused: bool
    emergency_accesses: list[EntryOut]
    masked_documents: list[str]

    @classmethod
    def of(cls, view: PolicyView) -> PolicyOut:
        def of_kind(kind: EntryKind) -> list[EntryOut]:
            return [
                EntryOut.of(row, view.reasons.get(row.id) or None)
                for row in view.entries
                if row.kind == kind.value
            ]

        treating = of_kind(EntryKind.TREATING_DOCTOR)
        return cls(
            patient=view.patient_id,
            version=view.version,
            treating_doctor=treating[-1] if treating else None,
            care_team=of_kind(EntryKind.CARE_TEAM),
            point_of_care=of_kind(EntryKind.POINT_OF_CARE),
            blocked=of_kind(EntryKind.BLOCK),
            delegations=of_kind(EntryKind.DELEGATION),
            representatives=of_kind(EntryKind.REPRESENTATIVE),
            emergency_access_refused=bool(of_kind(EntryKind.EMERGENCY_OPT_OUT)),
            emergency_accesses=of_kind(EntryKind.EMERGENCY),
            masked_documents=view.masked_documents,
        )


class EventOut(Body):
    version: int
    at: datetime
    change: Verb
    entry: EntryOut
    by_role: str
    by: str

    @classmethod
    def of(cls, event: PolicyEvent) -> EventOut:
        row = event.entry
        ended = event.change is Verb.END
        return cls(
            version=event.version,
            at=event.at,
            change=event.change,
            entry=EntryOut.of(row),
            by_role=(row.ended_by_role if ended else row.created_by_role) or "",
            by=(row.ended_by if ended else row.created_by) or "",
        )


class RelationshipOut(Body):
    patient: str
    relationship: EntryOut


class MaskOut(Body):
    document: str
    masked: bool
    version: int


class InvitationRequest(Body):
    may_add: bool = Field(description="Reading and adding documents (true) or reading only")
    categories: list[str] = Field(
        description="Document category codes the caregiver may see; ['*'] for all"
    )
    until: AwareDatetime = Field(description="When the delegation ends: at most a year ahead")


class InvitationOut(Body):
    id: str
    code: str = Field(description="The one-time code: shown once, never kept by the vault")
    code_expires: datetime
    scope: DelegationScope
    categories: list[str]
    until: datetime


class PendingInvitationOut(Body):
    id: str
    code_expires: datetime
    scope: DelegationScope
    categories: list[str]
    until: datetime
    since: datetime

    @classmethod
    def of(cls, row: CaregiverInvitation) -> PendingInvitationOut:
        return cls(
            id=row.id,
            code_expires=row.code_expires_at,
            scope=DelegationScope(row.scope),
            categories=list(row.categories),
            until=row.delegation_expires_at,
            since=row.created_at,
        )


class AcceptRequest(Body):
    code: str = Field(min_length=1, max_length=128, pattern=r"^\S+$")


class HeldDelegationOut(Body):
    delegation: EntryOut
    display_name: str | None = Field(
        default=None, description="The caregiver's name as their identity provider gave it"
    )
    in_force: bool
    ended: datetime | None = None


class DelegationsOut(Body):
    delegations: list[HeldDelegationOut]
    invitations: list[PendingInvitationOut]

    @classmethod
    def of(cls, view: DelegationsView) -> DelegationsOut:
        return cls(
            delegations=[
                HeldDelegationOut(
                    delegation=EntryOut.of(held.entry),
                    display_name=held.display_name,
                    in_force=held.in_force,
                    ended=held.entry.ended_at,
                )
                for held in view.delegations
            ],
            invitations=[PendingInvitationOut.of(row) for row in view.invitations],
        )
