"""The pages about a record's lifetime (docs/patients.md): close the space, ask for its
deletion, reopen it; oppose the creation of one's space and withdraw the opposition.

Thin, as vault/web/routes.py, on whose router these pages are declared (so that the
space's route walks and guards cover them): read the form, call vault/web/lifetime.py
(which calls the records services), render. Every page depends on ``signed_in`` (through
the request's transaction), every form on ``csrf_checked``.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Form, Query, Request
from starlette.responses import Response

from vault.access.permissions import Permission
from vault.access.policy import Actor
from vault.access.state import EntryKind
from vault.http.deps import ServicesDep, requires
from vault.identity.principal import Role
from vault.services import Services
from vault.web.deps import CsrfDep, WebActorDep, WebSessionDep, WebUnitOfWorkDep
from vault.web.i18n import gettext
from vault.web.lifetime import CLOSURE, OPPOSITION, is_closed, lifetime
from vault.web.routes import (
    OK,
    PatientId,
    Record,
    RecordNotFound,
    page,
    record_of,
    router,
    see_other,
)
from vault.web.sessions import SessionData
from vault.web.space import FormErrors

# Texts a redirect may ask the next page to show: keys of the catalog, nothing else.
NOTICES = frozenset({"closed", "deletion_requested", "opposed", "opposition_withdrawn"})
YES = "oui"
Choice = Annotated[str, Form(max_length=8)]


def notice(ok: str | None) -> str | None:
    return gettext(f"notice.{ok}") if ok in NOTICES else None


def closure_url(pid: str) -> str:
    return CLOSURE.format(pid=quote(pid))


def _record(session: Any, services: Services, actor: Actor, data: SessionData, pid: str) -> Record:
    """The record, for the page's banner and menu. Whether the person may see where it
    stands is decided by the records service, not here: a closed record is in nobody's
    list of relationships (reading the policy is refused), so a legal representative's
    closed record is shown under its holder's generic name."""
    try:
        return record_of(session, services, actor, data, pid)
    except RecordNotFound:
        return Record(
            pid, gettext("who.represented"), False, False, None, EntryKind.REPRESENTATIVE.value
        )


def _closure_context(
    session: Any, services: Services, actor: Actor, data: SessionData, pid: str
) -> dict[str, Any]:
    standing = lifetime(services).standing(session, actor, pid)
    return {
        "record": _record(session, services, actor, data, pid),
        "standing": standing,
        "closed": is_closed(standing),
        "terms": lifetime(services).terms(),
        "nav": "closure",
    }


# The person's own opposition is about no record (vault/api/records.py says the same).
_OPPOSITION = (
    "the person's own opposition to a space being created, about no record: the person"
    " themselves only, by a patient token that may create their Patient"
)


@router.get(CLOSURE, dependencies=[requires(Permission.RECORD_STATUS)])
def closure(
    request: Request,
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    ok: OK = None,
) -> Response:
    """Open: what closing does, and the choice to make. Closed: when it will be deleted,
    reopening, and deletion now."""
    context = _closure_context(session, services, actor, data, pid)
    return page(request, "closure.html", notice=notice(ok), **context)


@router.get(CLOSURE + "/confirmer", dependencies=[requires(Permission.RECORD_STATUS)])
def closure_confirm(
    request: Request,
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    suppression: Annotated[str, Query(max_length=8)] = "",
) -> Response:
    """The step before closing: what will happen, said once more, and the button."""
    context = _closure_context(session, services, actor, data, pid)
    if context["closed"]:
        return see_other(closure_url(pid))
    return page(request, "closure_confirm.html", delete_now=suppression == YES, **context)


@router.post(
    CLOSURE,
    dependencies=[CsrfDep, requires(Permission.RECORD_CLOSE, Permission.RECORD_DELETE)],
)
def close(
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    suppression: Choice = "",
) -> Response:
    lifetime(services).close(session, actor, pid, delete_now=suppression == YES)
    return see_other(closure_url(pid), "closed")


@router.get(CLOSURE + "/suppression", dependencies=[requires(Permission.RECORD_STATUS)])
def deletion_confirm(
    request: Request,
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
) -> Response:
    """The step before asking a closed space's deletion: it cannot be undone."""
    context = _closure_context(session, services, actor, data, pid)
    if not context["closed"] or context["standing"].deletion_requested_at is not None:
        return see_other(closure_url(pid))
    return page(request, "deletion_confirm.html", **context)


@router.post(CLOSURE + "/suppression", dependencies=[CsrfDep, requires(Permission.RECORD_DELETE)])
def request_deletion(
    pid: PatientId, services: ServicesDep, actor: WebActorDep, session: WebUnitOfWorkDep
) -> Response:
    lifetime(services).request_deletion(session, actor, pid)
    return see_other(closure_url(pid), "deletion_requested")


@router.post(
    "/dossiers/{pid}/reouverture", dependencies=[CsrfDep, requires(Permission.RECORD_REOPEN)]
)
def reopen(
    pid: PatientId, services: ServicesDep, actor: WebActorDep, session: WebUnitOfWorkDep
) -> Response:
    lifetime(services).reopen(session, actor, pid)
    return see_other(f"/dossiers/{quote(pid)}/documents", "reopened")


# -- opposing the creation of one's space ------------------------------------------------


def _opposition_context(session: Any, services: Services, actor: Actor) -> dict[str, Any] | None:
    """None for whoever this page is not for: someone with a space, or not a patient."""
    if actor.principal.role is not Role.PATIENT or actor.own_patient_id is not None:
        return None
    return {"opposed_at": lifetime(services).opposition(session, actor)}


@router.get(OPPOSITION, dependencies=[requires(reason=_OPPOSITION)])
def opposition(
    request: Request,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    ok: OK = None,
) -> Response:
    context = _opposition_context(session, services, actor)
    if context is None:
        return see_other("/")
    return page(request, "opposition.html", errors={}, notice=notice(ok), **context)


@router.post(OPPOSITION, dependencies=[CsrfDep, requires(reason=_OPPOSITION)])
def oppose(
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    confirme: Choice = "",
) -> Response:
    context = _opposition_context(session, services, actor)
    if context is None:
        return see_other("/")
    if confirme != YES:
        error = FormErrors({"confirm": gettext("error.opposition.confirm")})
        error.template = "opposition.html"
        error.context = {**context, "notice": None}
        raise error
    lifetime(services).oppose(session, actor)
    return see_other(OPPOSITION, "opposed")


@router.post(OPPOSITION + "/retrait", dependencies=[CsrfDep, requires(reason=_OPPOSITION)])
def withdraw(services: ServicesDep, actor: WebActorDep, session: WebUnitOfWorkDep) -> Response:
    if _opposition_context(session, services, actor) is None:
        return see_other("/")
    lifetime(services).withdraw(session, actor)
    return see_other(OPPOSITION, "opposition_withdrawn")
