"""Read a SubmissionSet List that an ITI-65 transaction stored."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from vault.access.permissions import Permission
from vault.api.deps import ActorDep, SessionDep
from vault.api.responses import FhirResponse
from vault.http.deps import ServicesDep, requires

router = APIRouter(prefix="/fhir", tags=["List"])


@router.get(
    "/List/{list_id}",
    summary="Read the SubmissionSet of an ITI-65 submission",
    dependencies=[requires(Permission.DOCUMENT_READ)],
)
def read(list_id: str, actor: ActorDep, services: ServicesDep, session: SessionDep) -> Response:
    resource = services.submission_sets.read(session, actor, list_id)
    return FhirResponse(resource, headers={"ETag": 'W/"1"'})
