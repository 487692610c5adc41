from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import Response

from vault.access.permissions import Permission
from vault.api.deps import ActorDep, FhirBody, SessionDep
from vault.api.responses import FhirResponse
from vault.errors import BadRequest, PreconditionFailed
from vault.fhir.outcome import operation_outcome
from vault.fhir.wire import parse_resource
from vault.http.deps import ServicesDep, requires

router = APIRouter(prefix="/fhir", tags=["Patient"])


@router.post(
    "/Patient",
    summary="Create a patient's record (conditional on If-None-Exist: identifier=system|value)",
    dependencies=[requires(Permission.PATIENT_CREATE, Permission.PATIENT_READ)],
)
def create(
    actor: ActorDep, services: ServicesDep, session: SessionDep, body: FhirBody, request: Request
) -> Response:
    resource = parse_resource(body, "Patient")
    condition = request.headers.get("if-none-exist")
    if condition:
        query = parse_qs(condition.removeprefix("Patient?"))
        if set(query) != {"identifier"} or len(query["identifier"]) != 1:
            raise BadRequest(
                "If-None-Exist supports identifier=system|value only", expression="If-None-Exist"
            )
        ins = services.patients.ins_of(resource, expression="Patient")
        system, _, value = query["identifier"][0].partition("|")
        if (system, value) != (ins.system, ins.value):
            raise PreconditionFailed("If-None-Exist does not match the patient's INS")
    patient, created = services.patients.ensure(session, actor, resource, expression="Patient")
    location = f"{services.settings.issuer}/fhir/Patient/{patient.id}/_history/{patient.version}"
    if not created:
        # The record exists: say where, but reveal nothing of it.
        outcome = operation_outcome(
            "informational", "A patient with this identifier already exists", severity="information"
        )
        return FhirResponse(outcome, status_code=200, headers={"Location": location})
    stored = services.patients.read_back(session, actor, patient.id)
    return FhirResponse(
        stored or operation_outcome("informational", "Created", severity="information"),
        status_code=201,
        headers={"Location": location, "ETag": 'W/"1"'},
    )


@router.get(
    "/Patient/{patient_id}",
    summary="Read a patient's record",
    dependencies=[requires(Permission.PATIENT_READ)],
)
def read(patient_id: str, actor: ActorDep, services: ServicesDep, session: SessionDep) -> Response:
    resource = services.patients.read(session, actor, patient_id)
    version = (resource.get("meta") or {}).get("versionId", "1")
    return FhirResponse(resource, headers={"ETag": f'W/"{version}"'})
