"""ITI-105 publish, ITI-67 search, read, history, metadata update and delete of
DocumentReference. Thin: parse, call a service, render."""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import URL
from starlette.responses import Response

from vault.access.permissions import Permission
from vault.api.deps import ActorDep, FhirBody, PatchBody, PrincipalDep, SessionDep, end_reads
from vault.api.fhir.bundles import history_bundle, searchset
from vault.api.fhir.params import apply_date, split_or
from vault.api.responses import FhirResponse
from vault.documents.patch import parse_fhirpath_patch, parse_json_patch
from vault.documents.repository import SearchCriteria
from vault.errors import BadRequest, PreconditionFailed
from vault.fhir.outcome import with_warnings
from vault.fhir.wire import parse_json, parse_resource
from vault.http.deps import ServicesDep, requires
from vault.identity.principal import normalise_professional_id

router = APIRouter(prefix="/fhir", tags=["DocumentReference"])

SEARCH_PARAMETERS = frozenset(
    {
        "patient",
        "patient.identifier",
        "subject",
        "status",
        "type",
        "category",
        "date",
        "author",
        "author.identifier",
        "security-label",
        "_count",
        "_cursor",
        "_format",
        "_pretty",
        # Accepted and answered without a total: exact counts of a large record cost more
        # than the page itself.
        "_total",
    }
)


def _version_headers(resource: dict[str, Any], location: str | None = None) -> dict[str, str]:
    meta = resource.get("meta") or {}
    headers = {"ETag": f'W/"{meta.get("versionId", "1")}"'}
    if meta.get("lastUpdated"):
        updated = datetime.fromisoformat(str(meta["lastUpdated"]))
        headers["Last-Modified"] = format_datetime(updated, usegmt=True)
    if location:
        headers["Location"] = location
    return headers


def expected_version(if_match: str | None) -> int | None:
    """The version an If-Match header names (``W/"3"``, ``"3"``); None when absent or ``*``."""
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip().removeprefix("W/").strip('"')
    # isdigit alone admits "²" and other digits int() refuses.
    if not (tag.isascii() and tag.isdigit()) or len(tag) > 9:
        raise PreconditionFailed('If-Match must name a version ETag, such as W/"2"')
    return int(tag)


def _search_url(base: str, request: Request, **replace: str | int) -> str:
    """Links point at the configured base, not at whatever host a proxy forwarded."""
    query = URL(f"/?{request.url.query}").include_query_params(**replace).query
    return f"{base}/fhir/DocumentReference" + (f"?{query}" if query else "")


@router.post(
    "/DocumentReference",
    summary="ITI-105 Simplified Publish, or a patient's own upload",
    dependencies=[requires(Permission.DOCUMENT_CREATE, Permission.DOCUMENT_UPDATE)],
)
def publish(
    actor: ActorDep, services: ServicesDep, session: SessionDep, body: FhirBody, request: Request
) -> Response:
    resource = parse_resource(body, "DocumentReference")
    stored = services.ingestion.publish(session, actor, resource)
    location = (
        f"{services.settings.issuer}/fhir/DocumentReference/{stored.id}/_history/{stored.version}"
    )
    headers = _version_headers(stored.resource, location)
    outcome = with_warnings(stored.resource, stored.warnings)
    if "return=OperationOutcome" in (request.headers.get("prefer") or "") and outcome is not None:
        return FhirResponse(outcome, status_code=201 if stored.created else 200, headers=headers)
    return FhirResponse(
        stored.resource, status_code=201 if stored.created else 200, headers=headers
    )


@router.get(
    "/DocumentReference",
    summary="ITI-67 Find Document References",
    dependencies=[requires(Permission.DOCUMENT_SEARCH)],
)
def search(
    principal: PrincipalDep, services: ServicesDep, session: SessionDep, request: Request
) -> Response:
    params = request.query_params
    unknown = set(params.keys()) - SEARCH_PARAMETERS
    if unknown:
        raise BadRequest(f"Unsupported search parameter: {sorted(unknown)[0]}")
    # The actor, the search and the end of its transaction in this one thread: one hop to
    # the thread pool per search (docs/performance.md).
    actor = services.access.actor(session, principal)
    patient_id = _patient_of_search(
        actor,
        services,
        session,
        params.getlist("patient") + params.getlist("subject"),
        params.getlist("patient.identifier"),
    )
    criteria: dict[str, Any] = {"patient_id": patient_id or "-"}
    criteria["statuses"] = split_or(params.getlist("status"))
    criteria["type_codes"] = split_or(params.getlist("type"))
    criteria["category_codes"] = split_or(params.getlist("category"))
    criteria["security_labels"] = split_or(params.getlist("security-label"))
    authors = [a.rpartition("/")[2] for a in split_or(params.getlist("author"))]
    for token in split_or(params.getlist("author.identifier")):
        system, _, value = token.rpartition("|")
        authors.append(normalise_professional_id(system or None, value))
    criteria["authors"] = tuple(authors)
    for value in params.getlist("date"):
        apply_date(criteria, value)
    count = _count(
        params.get("_count"),
        services.settings.search_default_count,
        services.settings.search_max_count,
    )
    base = services.settings.issuer
    self_url = _search_url(base, request)
    if patient_id is None:
        # An unknown patient looks exactly like a patient with no visible document.
        page = services.search.refuse_unknown_patient(session, actor)
    else:
        page = services.search.search(
            session, actor, SearchCriteria(**criteria), count, params.get("_cursor")
        )
    end_reads(session)
    next_url = None
    if page.next_cursor:
        next_url = _search_url(base, request, _cursor=page.next_cursor, _count=count)
    return FhirResponse(searchset(base, page.resources, self_url, next_url))


def _patient_of_search(
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
    references: list[str],
    identifiers: list[str],
) -> str | None:
    if len(references) + len(identifiers) > 1:
        raise BadRequest("Give the patient once, by patient or patient.identifier")
    if references:
        patient_id = references[0].rpartition("/")[2]
        if patient_id == actor.own_patient_id:
            # A patient's own record, found by their token in this transaction already.
            return patient_id
        return patient_id if services.patients.exists(session, patient_id) else None
    if identifiers:
        return services.patients.id_by_query(
            session, identifiers[0], expression="patient.identifier"
        )
    if actor.own_patient_id is not None:
        return actor.own_patient_id
    raise BadRequest("ITI-67 requires patient or patient.identifier", expression="patient")


def _count(text: str | None, default: int, maximum: int) -> int:
    if text is None:
        return default
    # isdigit alone admits "²" and other digits int() refuses.
    if not (text.isascii() and text.isdigit()):
        raise BadRequest("_count must be a non-negative integer", expression="_count")
    # A page size of ten digits or more is past any maximum; no need to convert it.
    return max(1, min(int(text) if len(text) < 10 else maximum, maximum))


@router.get(
    "/DocumentReference/{document_id}",
    summary="Read a DocumentReference",
    dependencies=[requires(Permission.DOCUMENT_READ)],
)
def read(document_id: str, actor: ActorDep, services: ServicesDep, session: SessionDep) -> Response:
    resource = services.documents.read(session, actor, document_id)
    return FhirResponse(resource, headers=_version_headers(resource))


@router.get(
    "/DocumentReference/{document_id}/_history",
    summary="Every version of a DocumentReference",
    dependencies=[requires(Permission.DOCUMENT_READ)],
)
def history(
    document_id: str, actor: ActorDep, services: ServicesDep, session: SessionDep
) -> Response:
    versions = services.documents.history(session, actor, document_id)
    self_url = f"{services.settings.issuer}/fhir/DocumentReference/{document_id}/_history"
    return FhirResponse(history_bundle(services.settings.issuer, versions, self_url))


@router.get(
    "/DocumentReference/{document_id}/_history/{version}",
    summary="Read one version of a DocumentReference",
    dependencies=[requires(Permission.DOCUMENT_READ)],
)
def read_version(
    document_id: str, version: int, actor: ActorDep, services: ServicesDep, session: SessionDep
) -> Response:
    if version < 1:
        raise BadRequest("Versions start at 1", expression="version")
    resource = services.documents.read(session, actor, document_id, version)
    return FhirResponse(resource, headers=_version_headers(resource))


@router.patch(
    "/DocumentReference/{document_id}",
    summary="Metadata update (status, securityLabel): FHIRPath Patch or JSON Patch",
    dependencies=[requires(Permission.DOCUMENT_UPDATE)],
)
def patch(
    document_id: str,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
    request: Request,
    body: PatchBody,
) -> Response:
    kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    operations = (
        parse_json_patch(parse_json(body))
        if kind == "application/json-patch+json"
        else parse_fhirpath_patch(parse_resource(body, "Parameters"))
    )
    document, resource = services.documents.update_metadata(
        session, actor, document_id, operations, expected_version(request.headers.get("if-match"))
    )
    return FhirResponse(
        resource,
        headers=_version_headers(
            resource,
            f"{services.settings.issuer}/fhir/DocumentReference/{document.id}/_history/{document.current_version}",
        ),
    )


@router.delete(
    "/DocumentReference/{document_id}",
    status_code=204,
    summary="Withdraw a document: its keys are destroyed",
    dependencies=[requires(Permission.DOCUMENT_DELETE)],
)
def delete(
    document_id: str, actor: ActorDep, services: ServicesDep, session: SessionDep, request: Request
) -> Response:
    services.documents.delete(
        session, actor, document_id, expected_version(request.headers.get("if-match"))
    )
    return Response(status_code=204)
