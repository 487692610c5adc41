"""E-mail notifications: the patient's preferences (JSON, behind the token like the policy
API) and the two links e-mails carry (public: the link is the credential). Thin: parse,
call the preferences service, render."""

from __future__ import annotations

import html
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Response
from starlette.responses import HTMLResponse

from vault.access.permissions import Permission
from vault.api.deps import ActorDep, SessionDep, record_of
from vault.db import transaction
from vault.http.deps import ServicesDep, public, requires
from vault.notifications.schemas import AddressRequest, EventsRequest, PreferencesOut
from vault.notifications.service import LinkRefused

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
# The pages below hold no script and load nothing.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


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


def _page(
    title: str, text: str, *, form_action: str | None = None, status: int = 200
) -> HTMLResponse:
    form = (
        f'<form method="post" action="{html.escape(form_action)}">'
        f'<button type="submit">{html.escape(title)}</button></form>'
        if form_action
        else ""
    )
    page = (
        '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body><main>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{form}</main></body></html>"
    )
    return HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)


_REFUSED = ("Lien invalide", "Ce lien est inconnu, a déjà servi ou a expiré.")


# A GET only shows a button: mail scanners open links, and must not confirm or opt out.
@public_router.get(
    CONFIRM,
    summary="The confirmation link's page",
    response_class=HTMLResponse,
    dependencies=[public("the e-mailed link is the credential")],
)
def confirm_page(token: Token) -> HTMLResponse:
    return _page(
        "Confirmer mon adresse",
        "Confirmez que vous souhaitez recevoir à cette adresse les nouvelles de votre espace.",
        form_action=f"/api/notifications{CONFIRM}?token={token}",
    )


@public_router.post(
    CONFIRM,
    summary="Confirm the address the link was sent to",
    response_class=HTMLResponse,
    dependencies=[public("the e-mailed link is the credential", Permission.NOTIFICATIONS_MANAGE)],
)
def confirm(token: Token, services: ServicesDep) -> HTMLResponse:
    try:
        with transaction(services.session_factory) as session:
            services.notifications.confirm(session, token)
    except LinkRefused:
        return _page(*_REFUSED, status=404)
    return _page("Adresse confirmée", "Vous recevrez désormais les e-mails que vous avez choisis.")


@public_router.get(
    UNSUBSCRIBE,
    summary="The opt-out link's page",
    response_class=HTMLResponse,
    dependencies=[public("the e-mailed link is the credential")],
)
def unsubscribe_page(record: Record, token: Token) -> HTMLResponse:
    return _page(
        "Ne plus recevoir d'e-mails",
        "Vous ne recevrez plus d'e-mail de votre espace santé ; vous pourrez changer d'avis "
        "depuis votre espace.",
        form_action=f"/api/notifications{UNSUBSCRIBE}?{urlencode({'record': record, 'token': token})}",
    )


@public_router.post(
    UNSUBSCRIBE,
    summary="One-click opt-out (RFC 8058: the body is List-Unsubscribe=One-Click)",
    response_class=HTMLResponse,
    dependencies=[public("the e-mailed link is the credential", Permission.NOTIFICATIONS_MANAGE)],
)
def unsubscribe(record: Record, token: Token, services: ServicesDep) -> HTMLResponse:
    try:
        with transaction(services.session_factory) as session:
            services.notifications.unsubscribe(session, record, token)
    except LinkRefused:
        return _page(*_REFUSED, status=404)
    return _page("Désinscription faite", "Vous ne recevrez plus d'e-mail de votre espace santé.")
