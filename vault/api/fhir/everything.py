"""``GET /fhir/Patient/{id}/$everything``: the whole record for SMART patient apps, paged
(docs/lifecycle.md). Thin: parse, call the service, render."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from vault.access.permissions import Permission
from vault.api.deps import ActorDep, SessionDep
from vault.api.fhir.bundles import searchset
from vault.api.responses import FhirResponse
from vault.errors import BadRequest
from vault.http.deps import ServicesDep, requires
from vault.services.exports import everything

router = APIRouter(prefix="/fhir", tags=["Patient"])

PARAMETERS = frozenset({"_count", "_cursor", "_format", "_pretty"})


@router.get(
    "/Patient/{patient_id}/$everything",
    summary="Patient/$everything: the Patient, Consents, DocumentReferences (content by "
    "reference to Binary) and AuditEvents, paged",
    dependencies=[
        requires(
            Permission.RECORD_EXPORT,
            Permission.PATIENT_READ,
            Permission.DOCUMENT_READ,
            Permission.POLICY_READ,
            Permission.AUDIT_READ,
        )
    ],
)
def patient_everything(
    patient_id: Annotated[str, Path(max_length=64)],
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
    request: Request,
) -> Response:
    params = request.query_params
    unknown = set(params.keys()) - PARAMETERS
    if unknown:
        raise BadRequest(f"Unsupported parameter: {sorted(unknown)[0]}")
    count = _count(
        params.get("_count"),
        services.settings.search_default_count,
        services.settings.search_max_count,
    )
    page = everything(services).page(session, actor, patient_id, count, params.get("_cursor"))
    next_url = None
    if page.next_cursor:
        next_url = str(request.url.include_query_params(_cursor=page.next_cursor, _count=count))
    return FhirResponse(
        searchset(services.settings.issuer, page.resources, str(request.url), next_url)
    )


def _count(text: str | None, default: int, maximum: int) -> int:
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or len(text) > 6 or int(text) < 1:
        raise BadRequest("_count must be a positive integer", expression="_count")
    return min(int(text), maximum)
