from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from vault.access.permissions import Permission
from vault.api.deps import ActorDep, FhirBody, SessionDep
from vault.api.fhir.bundles import transaction_response
from vault.api.responses import FhirResponse
from vault.fhir.wire import parse_resource
from vault.http.deps import ServicesDep, requires

router = APIRouter(prefix="/fhir", tags=["Transaction"])


@router.post(
    "",
    summary="ITI-65 Provide Document Bundle (a transaction Bundle); all or nothing",
    dependencies=[
        requires(Permission.DOCUMENT_CREATE, Permission.DOCUMENT_UPDATE, Permission.PATIENT_CREATE)
    ],
)
def transaction(
    actor: ActorDep, services: ServicesDep, session: SessionDep, body: FhirBody
) -> Response:
    bundle = parse_resource(body, "Bundle")
    results = services.ingestion.provide_bundle(session, actor, bundle)
    return FhirResponse(transaction_response(results))
