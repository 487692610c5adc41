"""The access policy API: patients (and their legal representatives) decide who sees their
record; caregivers see and give up their own delegations; professionals declare emergency
access and point-of-care consent. JSON; every change is decided and audited by the access
service. Thin: parse, call the policy service, render."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from vault.access.permissions import Permission
from vault.access.state import CAREGIVER_SYSTEM, DelegationScope, EntryKind
from vault.api.deps import ActorDep, SessionDep, record_of
from vault.errors import InvalidResource
from vault.http.deps import ServicesDep, requires
from vault.identity.principal import (
    IDNPS_SYSTEM,
    INS_SYSTEMS,
    RPPS_SYSTEM,
    normalise_professional_id,
)
from vault.policies.schemas import (
    AcceptRequest,
    DelegationRequest,
    DelegationsOut,
    EmergencyRefusalRequest,
    EmergencyRequest,
    EntryOut,
    EventOut,
    Identifier,
    InvitationOut,
    InvitationRequest,
    MaskOut,
    MaskRequest,
    PointOfCareRequest,
    PolicyOut,
    ProfessionalRequest,
    RelationshipOut,
    RepresentativeRequest,
)

router = APIRouter(prefix="/api", tags=["Access policy"])

PatientId = Annotated[
    str,
    Path(
        max_length=64,
        description="The patient's record id, or 'me' for the caller's own record",
    ),
]
# What an IDNPS (or RPPS) looks like: "8" + RPPS, "0" + ADELI, "3" + FINESS "/" local id.
# A route that names a professional to write into the policy takes nothing else.
PROFESSIONAL_ID = r"^[0-9A-Za-z][0-9A-Za-z/._-]{0,63}$"
RECORD = "/patients/{patient_id}"
POLICY = RECORD + "/policy"


def _patient(actor: ActorDep, patient_id: str) -> str:
    return record_of(actor, patient_id)


def _idnps(identifier: Identifier) -> str:
    if identifier.system not in (IDNPS_SYSTEM, RPPS_SYSTEM):
        raise InvalidResource(
            f"Name professionals by IDNPS ({IDNPS_SYSTEM}) or RPPS ({RPPS_SYSTEM})",
            expression="professional.system",
        )
    return normalise_professional_id(identifier.system, identifier.value)


def _path_idnps(value: str) -> str:
    # A bare 11-digit number is an RPPS number; its IDNPS is "8" followed by it.
    return normalise_professional_id(RPPS_SYSTEM, value)


def _created(response: Response, created: bool) -> None:
    response.status_code = 201 if created else 200


# -- reading -------------------------------------------------------------------------------


@router.get(
    POLICY,
    summary="The patient's current access policy",
    response_model=PolicyOut,
    dependencies=[requires(Permission.POLICY_READ)],
)
def read_policy(
    patient_id: PatientId, actor: ActorDep, services: ServicesDep, session: SessionDep
) -> PolicyOut:
    return PolicyOut.of(services.policies.view(session, actor, _patient(actor, patient_id)))


@router.get(
    POLICY + "/history",
    summary="Every change to the access policy, newest first",
    response_model=list[EventOut],
    dependencies=[requires(Permission.POLICY_READ)],
)
def policy_history(
    patient_id: PatientId, actor: ActorDep, services: ServicesDep, session: SessionDep
) -> list[EventOut]:
    events = services.policies.history(session, actor, _patient(actor, patient_id))
    return [EventOut.of(event) for event in events]


@router.get(
    "/me/relationships",
    summary="The delegations and legal representations naming the caller",
    response_model=list[RelationshipOut],
    dependencies=[requires(Permission.POLICY_READ)],
)
def my_relationships(
    actor: ActorDep, services: ServicesDep, session: SessionDep
) -> list[RelationshipOut]:
    rows = services.policies.relationships_of(session, actor)
    return [RelationshipOut(patient=row.patient_id, relationship=EntryOut.of(row)) for row in rows]


# -- professionals named by the patient -------------------------------------------------------


def _add(
    kind: EntryKind,
    patient_id: str,
    body: ProfessionalRequest,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
    response: Response,
) -> EntryOut:
    change = services.policies.add_professional(
        session, actor, _patient(actor, patient_id), kind, _idnps(body.professional)
    )
    _created(response, change.created)
    return EntryOut.of(change.entry)


@router.put(
    POLICY + "/treating-doctor",
    summary="Designate the treating doctor (médecin traitant)",
    response_model=EntryOut,
    dependencies=[requires(Permission.POLICY_MANAGE)],
)
def set_treating_doctor(
    patient_id: PatientId,
    body: ProfessionalRequest,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
    response: Response,
) -> EntryOut:
    return _add(EntryKind.TREATING_DOCTOR, patient_id, body, actor, services, session, response)


@router.delete(
    POLICY + "/treating-doctor",
    status_code=204,
    summary="No treating doctor",
    dependencies=[requires(Permission.POLICY_MANAGE)],
)
def clear_treating_doctor(
    patient_id: PatientId, actor: ActorDep, services: ServicesDep, session: SessionDep
) -> Response:
    services.policies.remove_professional(
        session, actor, _patient(actor, patient_id), EntryKind.TREATING_DOCTOR
    )
    return Response(status_code=204)


@router.post(
    POLICY + "/care-team",
    status_code=201,
    summary="Authorize a professional as a member of the care team",
    response_model=EntryOut,
    dependencies=[requires(Permission.POLICY_MANAGE)],
)
def add_care_team_member(
    patient_id: PatientId,
    body: ProfessionalRequest,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
    response: Response,
) -> EntryOut:
    return _add(EntryKind.CARE_TEAM, patient_id, body, actor, services, session, response)


@router.delete(
    POLICY + "/care-team/{idnps}",
    status_code=204,
    summary="Remove a care team member",
    dependencies=[requires(Permission.POLICY_MANAGE)],
)
def remove_care_team_member(
    patient_id: PatientId,
    idnps: Annotated[str, Path(max_length=64)],
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> Response:
    services.policies.remove_professional(
        session, actor, _patient(actor, patient_id), EntryKind.CARE_TEAM, _path_idnps(idnps)
    )
    return Response(status_code=204)


@router.post(
    POLICY + "/blocks",
    status_code=201,
    summary="Block a professional: refused everything, whatever their relationship",
    response_model=EntryOut,
    dependencies=[requires(Permission.POLICY_MANAGE)],
)
def block_professional(
    patient_id: PatientId,
    body: ProfessionalRequest,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
    response: Response,
) -> EntryOut:
    return _add(EntryKind.BLOCK, patient_id, body, actor, services, session, response)


@router.delete(
    POLICY + "/blocks/{idnps}",
    status_code=204,
    summary="Unblock a professional",
    dependencies=[requires(Permission.POLICY_MANAGE)],
)
def unblock_professional(
    patient_id: PatientId,
    idnps: Annotated[str, Path(max_length=64)],
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> Response:
    services.policies.remove_professional(
        session, actor, _patient(actor, patient_id), EntryKind.BLOCK, _path_idnps(idnps)
    )
    return Response(status_code=204)


@router.delete(
    POLICY + "/point-of-care/{idnps}",
    status_code=204,
    summary="Withdraw the consent a professional recorded at the point of care",
    dependencies=[requires(Permission.POLICY_MANAGE)],
)
def withdraw_point_of_care(
    patient_id: PatientId,
    idnps: Annotated[str, Path(max_length=64)],
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> Response:
    services.policies.remove_professional(
        session, actor, _patient(actor, patient_id), EntryKind.POINT_OF_CARE, _path_idnps(idnps)
    )
    return Response(status_code=204)


@router.post(
    POLICY + "/point-of-care/{idnps}/block",
    status_code=201,
    summary="In one step: block a professional who declared consent at the point of care, "
    "and end that consent",
    response_model=EntryOut,
    dependencies=[requires(Permission.POLICY_MANAGE)],
)
def block_point_of_care_declarer(
    patient_id: PatientId,
    idnps: Annotated[str, Path(max_length=64, pattern=PROFESSIONAL_ID)],
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> EntryOut:
    row = services.policies.block_declarer(
        session, actor, _patient(actor, patient_id), _path_idnps(idnps)
    )
    return EntryOut.of(row)


# -- masks ---------------------------------------------------------------------------------------


@router.post(
    POLICY + "/masks",
    summary="Mask a document from professionals (MASQUE_PS); a new document version",
    response_model=MaskOut,
    dependencies=[requires(Permission.DOCUMENT_UPDATE)],
)
def mask_document(
    patient_id: PatientId,
    body: MaskRequest,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> MaskOut:
    version = services.policies.set_mask(
        session, actor, _patient(actor, patient_id), body.document, masked=True
    )
    return MaskOut(document=body.document, masked=True, version=version)


@router.delete(
    POLICY + "/masks/{document_id}",
    summary="Unmask a document",
    response_model=MaskOut,
    dependencies=[requires(Permission.DOCUMENT_UPDATE)],
)
def unmask_document(
    patient_id: PatientId,
    document_id: Annotated[str, Path(max_length=64)],
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> MaskOut:
    version = services.policies.set_mask(
        session, actor, _patient(actor, patient_id), document_id, masked=False
    )
    return MaskOut(document=document_id, masked=False, version=version)


# -- delegations and legal representatives --------------------------------------------------------


@router.post(
    POLICY + "/delegations",
    status_code=201,
    summary="Delegate access to a caregiver: read or read and upload, some categories, "
    "for at most a year",
    response_model=EntryOut,
    dependencies=[requires(Permission.DELEGATION_GRANT)],
)
def grant_delegation(
    patient_id: PatientId,
    body: DelegationRequest,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> EntryOut:
    row = services.policies.grant_delegation(
        session,
        actor,
        _patient(actor, patient_id),
        caregiver=body.caregiver,
        issuer=body.issuer,
        scope=body.scope,
        categories=body.categories,
        expires_at=body.expires,
    )
    return EntryOut.of(row)


@router.delete(
    POLICY + "/delegations/{delegation_id}",
    status_code=204,
    summary="Revoke a delegation (the caregiver may also give theirs up); effective at once",
    dependencies=[requires(Permission.DELEGATION_REVOKE)],
)
def revoke_delegation(
    patient_id: PatientId,
    delegation_id: Annotated[str, Path(max_length=64)],
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> Response:
    services.policies.revoke_delegation(session, actor, _patient(actor, patient_id), delegation_id)
    return Response(status_code=204)


@router.get(
    POLICY + "/delegations",
    summary="Every delegation, in force or past, with who holds it, and the invitations "
    "waiting to be accepted",
    response_model=DelegationsOut,
    dependencies=[requires(Permission.POLICY_READ)],
)
def list_delegations(
    patient_id: PatientId, actor: ActorDep, services: ServicesDep, session: SessionDep
) -> DelegationsOut:
    view = services.policies.delegations(session, actor, _patient(actor, patient_id))
    return DelegationsOut.of(view)


@router.post(
    POLICY + "/invitations",
    status_code=201,
    summary="Invite a caregiver: read, or read and add, some categories, until a day at most "
    "a year ahead; the answer carries a one-time code valid for a week",
    response_model=InvitationOut,
    dependencies=[requires(Permission.DELEGATION_GRANT)],
)
def invite_caregiver(
    patient_id: PatientId,
    body: InvitationRequest,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> InvitationOut:
    row, code = services.policies.invite_caregiver(
        session,
        actor,
        _patient(actor, patient_id),
        may_add=body.may_add,
        categories=body.categories,
        until=body.until,
    )
    return InvitationOut(
        id=row.id,
        code=code,
        code_expires=row.code_expires_at,
        scope=DelegationScope(row.scope),
        categories=list(row.categories),
        until=row.delegation_expires_at,
    )


@router.delete(
    POLICY + "/invitations/{invitation_id}",
    status_code=204,
    summary="Withdraw an invitation nobody has accepted yet: its code is refused from now on "
    "(an accepted invitation is a delegation, revoked as such; 409)",
    dependencies=[requires(Permission.DELEGATION_REVOKE)],
)
def withdraw_invitation(
    patient_id: PatientId,
    invitation_id: Annotated[str, Path(max_length=64)],
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> Response:
    services.policies.withdraw_invitation(
        session, actor, _patient(actor, patient_id), invitation_id
    )
    return Response(status_code=204)


@router.post(
    "/invitations/accept",
    status_code=201,
    summary="Caregivers: accept an invitation with its code; the delegation then names the "
    "identity that accepted it",
    response_model=RelationshipOut,
    dependencies=[requires(Permission.INVITATION_ACCEPT)],
)
def accept_invitation(
    body: AcceptRequest, actor: ActorDep, services: ServicesDep, session: SessionDep
) -> RelationshipOut:
    row = services.policies.accept_invitation(session, actor, body.code)
    return RelationshipOut(patient=row.patient_id, relationship=EntryOut.of(row))


@router.post(
    POLICY + "/representatives",
    status_code=201,
    summary="Register a legal representative: of a minor, or of an adult under a named "
    "legal protection measure; the patient (an adult) and the other representatives are told",
    response_model=EntryOut,
    dependencies=[requires(Permission.POLICY_MANAGE)],
)
def add_representative(
    patient_id: PatientId,
    body: RepresentativeRequest,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
    response: Response,
) -> EntryOut:
    identifier = body.representative
    if identifier.system not in (*INS_SYSTEMS, CAREGIVER_SYSTEM):
        raise InvalidResource(
            f"Name a representative by INS or by caregiver account ({CAREGIVER_SYSTEM})",
            expression="representative.system",
        )
    change = services.policies.add_representative(
        session,
        actor,
        _patient(actor, patient_id),
        system=identifier.system,
        value=identifier.value,
        until=body.until,
        issuer=body.issuer,
        measure=body.measure.type if body.measure else None,
        measure_reference=body.measure.reference if body.measure else None,
    )
    _created(response, change.created)
    return EntryOut.of(change.entry)


@router.delete(
    POLICY + "/representatives/{entry_id}",
    status_code=204,
    summary="End a legal representation",
    dependencies=[requires(Permission.POLICY_MANAGE)],
)
def end_representative(
    patient_id: PatientId,
    entry_id: Annotated[str, Path(max_length=64)],
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> Response:
    services.policies.end_representative(session, actor, _patient(actor, patient_id), entry_id)
    return Response(status_code=204)


# -- emergencies -------------------------------------------------------------------------------------


@router.put(
    POLICY + "/emergency-access-refusal",
    summary="Refuse (or stop refusing) emergency access in advance",
    response_model=EmergencyRefusalRequest,
    dependencies=[requires(Permission.POLICY_MANAGE)],
)
def set_emergency_refusal(
    patient_id: PatientId,
    body: EmergencyRefusalRequest,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> EmergencyRefusalRequest:
    services.policies.set_emergency_refusal(
        session, actor, _patient(actor, patient_id), refused=body.refused
    )
    return body


@router.post(
    RECORD + "/emergency-access",
    status_code=201,
    summary="Professionals: declare an emergency (bris de glace, or SAMU regulation) with "
    "a written reason; time-limited read access to non-masked documents",
    response_model=EntryOut,
    dependencies=[requires(Permission.EMERGENCY_DECLARE)],
)
def declare_emergency(
    patient_id: PatientId,
    body: EmergencyRequest,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> EntryOut:
    row = services.policies.declare_emergency(
        session, actor, _patient(actor, patient_id), reason=body.reason, mode=body.mode
    )
    return EntryOut.of(row)


@router.post(
    RECORD + "/point-of-care-consent",
    status_code=201,
    summary="Professionals: record that the patient, present, was informed and agreed",
    response_model=EntryOut,
    dependencies=[requires(Permission.CONSENT_DECLARE)],
)
def declare_point_of_care(
    patient_id: PatientId,
    body: PointOfCareRequest,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> EntryOut:
    if not (body.patient_informed and body.patient_agreed):
        raise InvalidResource(
            "Access at the point of care needs the patient informed and agreeing",
            expression="patientAgreed",
        )
    row = services.policies.declare_point_of_care(session, actor, _patient(actor, patient_id))
    return EntryOut.of(row)
