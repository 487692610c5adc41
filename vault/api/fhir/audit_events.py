"""``GET /fhir/AuditEvent?patient=...``: a patient's access history as IHE BALP
AuditEvents, newest first. Thin: parse, call the history service, render."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from vault.access.permissions import Permission
from vault.api.deps import ActorDep, SessionDep
from vault.api.fhir.bundles import searchset
from vault.api.hosts import public_url
from vault.api.responses import FhirResponse
from vault.audit.events import audit_event
from vault.errors import BadRequest
from vault.http.deps import ServicesDep, requires

router = APIRouter(prefix="/fhir", tags=["AuditEvent"])

SEARCH_PARAMETERS = frozenset({"patient", "_count", "_cursor", "_format", "_pretty"})


@router.get(
    "/AuditEvent",
    summary="A patient's access history (IHE BALP), newest first",
    dependencies=[requires(Permission.AUDIT_READ)],
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
    count = _count(
        params.get("_count"),
        services.settings.search_default_count,
        services.settings.search_max_count,
    )
    page = services.audit_log.history.page(session, actor, patient_id, count, params.get("_cursor"))
    base = services.settings.issuer
    next_url = None
    if page.next_cursor:
        next_url = public_url(services.settings, request, _cursor=page.next_cursor, _count=count)
    events = []
    for entry in page.entries:
        group = page.refusals.get(entry.id)
        if group is None:
            events.append(audit_event(entry, base))
        else:
            events.append(audit_event(entry, base, refusals=group.count, earliest=group.earliest))
    return FhirResponse(searchset(base, events, public_url(services.settings, request), next_url))


def _count(text: str | None, default: int, maximum: int) -> int:
    if text is None:
        return default
    # isdigit alone admits "²" and other digits int() refuses.
    if not (text.isascii() and text.isdigit()):
        raise BadRequest("_count must be a non-negative integer", expression="_count")
    # A page size of ten digits or more is past any maximum; no need to convert it.
    return max(1, min(int(text) if len(text) < 10 else maximum, maximum))
