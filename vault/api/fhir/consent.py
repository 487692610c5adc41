"""``GET /fhir/Consent?patient=...``: the patient's current access policy as FHIR Consent
resources (IHE PCF). Read-only; changes go through the access policy API (/api)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from vault.access.permissions import Permission
from vault.api.deps import ActorDep, SessionDep
from vault.api.fhir.bundles import searchset
from vault.api.responses import FhirResponse
from vault.errors import BadRequest
from vault.http.deps import ServicesDep, requires
from vault.policies.consent import consents

router = APIRouter(prefix="/fhir", tags=["Consent"])

SEARCH_PARAMETERS = frozenset({"patient", "_format", "_pretty"})


@router.get(
    "/Consent",
    summary="A patient's access policy as Consent resources (IHE PCF)",
    dependencies=[requires(Permission.POLICY_READ)],
)
def search(
    actor: ActorDep, services: ServicesDep, session: SessionDep, request: Request
) -> Response:
    params = request.query_params
    unknown = set(params.keys()) - SEARCH_PARAMETERS
    if unknown:
        raise BadRequest(f"Unsupported search parameter: {sorted(unknown)[0]}")
    patients = params.getlist("patient")
    if len(patients) > 1:
        raise BadRequest("Give the patient once", expression="patient")
    patient_id = patients[0].rpartition("/")[2] if patients else actor.own_patient_id
    if not patient_id:
        raise BadRequest("patient is required", expression="patient")
    view = services.policies.view(session, actor, patient_id)
    base = services.settings.issuer
    self_url = f"{base}/fhir/Consent?patient={quote(patient_id, safe='')}"
    return FhirResponse(searchset(base, consents(view), self_url, None))
