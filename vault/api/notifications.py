"""E-mail notifications: the patient's preferences (JSON, behind the token like the policy
API) and the two links e-mails carry (public: the link is the credential). Thin: parse,
call the preferences service, render."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.responses import HTMLResponse

from vault.access.permissions import Permission
from vault.api.deps import ActorDep, SessionDep, record_of
from vault.db import unit_of_work
from vault.http.deps import ServicesDep, public, requires
from vault.notifications.schemas import AddressRequest, EventsRequest, PreferencesOut
from vault.notifications.service import LinkRefused
from vault.web.routes import link_page

router = APIRouter(prefix="/api", tags=["Notifications"])

PatientId = Annotated[
    str,
    Path(
        max_length=64,
        description="The patient's record id, or 'me' for the caller's own record",
    ),
]


public_router = APIRouter(prefix="/api/notifications", tags=["Notifications"])

PREFERENCES = "/patients/{patient_id}/notifications"
CONFIRM = "/confirm"
UNSUBSCRIBE = "/unsubscribe"
PUBLIC_PATHS = frozenset({f"/api/notifications{CONFIRM}", f"/api/notifications{UNSUBSCRIBE}"})
Token = Annotated[str, Query(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_\-]+$")]
Record = Annotated[str, Query(min_length=1, max_length=64)]
# The links' pages are the patient's space's (vault/web/templates/link.html, its catalog,
# CSP and headers); only their forms post here.


@router.get(
    PREFERENCES,
    summary="The patient's e-mail preferences",
    response_model=PreferencesOut,
    dependencies=[requires(Permission.NOTIFICATIONS_READ)],
)
def read_preferences(
    patient_id: PatientId, actor: ActorDep, services: ServicesDep, session: SessionDep
) -> PreferencesOut:
    return PreferencesOut.of(
        services.notifications.view(session, actor, record_of(actor, patient_id))
    )


@router.put(
    PREFERENCES + "/address",
    status_code=202,
    summary="Set the e-mail address; a link is sent to it, and nothing else until it is followed",
    response_model=PreferencesOut,
    dependencies=[requires(Permission.NOTIFICATIONS_MANAGE)],
)
def set_address(
    patient_id: PatientId,
    body: AddressRequest,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> PreferencesOut:
    return PreferencesOut.of(
        services.notifications.set_address(
            session, actor, record_of(actor, patient_id), body.address
        )
    )


@router.delete(
    PREFERENCES + "/address",
    status_code=204,
    summary="Forget the e-mail address",
    dependencies=[requires(Permission.NOTIFICATIONS_MANAGE)],
)
def remove_address(
    patient_id: PatientId, actor: ActorDep, services: ServicesDep, session: SessionDep
) -> Response:
    services.notifications.remove_address(session, actor, record_of(actor, patient_id))
    return Response(status_code=204)


@router.put(
    PREFERENCES + "/events",
    summary="Choose the events to be told about by e-mail",
    response_model=PreferencesOut,
    dependencies=[requires(Permission.NOTIFICATIONS_MANAGE)],
)
def set_events(
    patient_id: PatientId,
    body: EventsRequest,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> PreferencesOut:
    return PreferencesOut.of(
        services.notifications.set_events(session, actor, record_of(actor, patient_id), body.events)
    )


# A GET only shows a button: mail scanners open links, and must not confirm or opt out.
@public_router.get(
    CONFIRM,
    summary="The confirmation link's page",
    response_class=HTMLResponse,
    dependencies=[public("the e-mailed link is the credential")],
)
def confirm_page(request: Request, token: Token) -> HTMLResponse:
    query = urlencode({"token": token})
    return link_page(request, "confirm", action=f"/api/notifications{CONFIRM}?{query}")


@public_router.post(
    CONFIRM,
    summary="Confirm the address the link was sent to",
    response_class=HTMLResponse,
    dependencies=[public("the e-mailed link is the credential", Permission.NOTIFICATIONS_MANAGE)],
)
def confirm(request: Request, token: Token, services: ServicesDep) -> HTMLResponse:
    try:
        with unit_of_work(services.session_factory) as session:
            services.notifications.confirm(session, token)
    except LinkRefused:
        return link_page(request, "refused", status=404)
    return link_page(request, "confirmed")


@public_router.get(
    UNSUBSCRIBE,
    summary="The opt-out link's page",
    response_class=HTMLResponse,
    dependencies=[public("the e-mailed link is the credential")],
)
def unsubscribe_page(request: Request, record: Record, token: Token) -> HTMLResponse:
    query = urlencode({"record": record, "token": token})
    return link_page(request, "unsubscribe", action=f"/api/notifications{UNSUBSCRIBE}?{query}")


@public_router.post(
    UNSUBSCRIBE,
    summary="One-click opt-out (RFC 8058: the body is List-Unsubscribe=One-Click)",
    response_class=HTMLResponse,
    dependencies=[public("the e-mailed link is the credential", Permission.NOTIFICATIONS_MANAGE)],
)
def unsubscribe(
    request: Request, record: Record, token: Token, services: ServicesDep
) -> HTMLResponse:
    try:
        with unit_of_work(services.session_factory) as session:
            services.notifications.unsubscribe(session, record, token)
    except LinkRefused:
        return link_page(request, "refused", status=404)
    return link_page(request, "unsubscribed")
