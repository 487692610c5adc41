"""The patient's space: server-rendered pages (docs/patients.md). Thin: read the form,
call vault/web/space.py (which calls the domain's services), render a template.

Every route but the sign-in ones and the assets depends on ``signed_in`` (the space's
guard); every POST on ``csrf_checked``.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from authlib.integrations.base_client import OAuthError
from authlib.integrations.starlette_client import OAuth
from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from vault.access.permissions import Permission
from vault.access.policy import Actor
from vault.access.state import EntryKind
from vault.db import unit_of_work
from vault.errors import Unauthenticated, VaultError
from vault.http.deps import ServicesDep, public, requires
from vault.identity.principal import Principal, Role
from vault.notifications.service import LinkRefused
from vault.observability.logs import get_logger
from vault.services import Services
from vault.web import csp
from vault.web.deps import (
    CsrfDep,
    CsrfRefused,
    SignedInDep,
    SignInRequired,
    WebActorDep,
    WebSessionDep,
    WebUnitOfWorkDep,
)
from vault.web.i18n import environment, gettext, parse_date, short_date
from vault.web.lifetime import lifetime
from vault.web.sessions import SessionData, SessionMiddleware, SessionStore, csrf_token
from vault.web.signin import (
    CLIENT,
    DEMO_ACCOUNTS,
    PRINCIPAL_KEY,
    build_oauth,
    demo_principal,
    display_name,
    principal_from_id_token,
    principal_record,
    session_principal,
)
from vault.web.space import HISTORY_ROLES, FormErrors, PageRefused, Space
from vault.web.terminology import terminology

log = get_logger("vault.web")

# The paths the space's session middleware serves (not its assets, which need none), and
# those open without a session.
PREFIXES = ("/dossiers/", "/login", "/logout", "/bienvenue", "/invitation")
CONFIRM_LINK = "/courriel/confirmer"
UNSUBSCRIBE_LINK = "/courriel/desinscription"
PUBLIC_PATHS = frozenset(
    {
        "/",
        "/login",
        "/login/callback",
        "/login/demo",
        "/logout",
        "/static/{name}",
        # The links in e-mails: the link is the credential.
        CONFIRM_LINK,
        UNSUBSCRIBE_LINK,
    }
)


def is_space_path(path: str) -> bool:
    return path == "/" or path.startswith(PREFIXES)


class SpaceRoute(APIRoute):
    """Errors become French pages, not OperationOutcomes: the person sees what happened
    and where to go, and the request's transaction still rolls back and records a
    refusal or a failed change (``web_unit_of_work`` finds the error in ``request.state``:
    it ends after this handler returns, so it would not see it raised)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (CsrfRefused, VaultError) as error:
                # Shown as a page, yet the request's transaction rolls back (web_unit_of_work).
                request.state.space_error = error
                return error_page(request, error)
            except SignInRequired:
                if request.method == "GET" and request.url.path != "/":
                    return RedirectResponse("/?" + urlencode({"retour": request.url.path}), 303)
                return RedirectResponse("/", 303)

        return handle


def error_page(request: Request, error: CsrfRefused | VaultError) -> Response:
    """The page that says what went wrong and where to go."""
    if isinstance(error, CsrfRefused):
        return page(request, "error.html", 403, message=gettext("error.csrf"))
    if isinstance(error, FormErrors):
        status = error.status_code
        if error.template is None:
            return page(request, "error.html", status, message=gettext("error.form"))
        return page(request, error.template, status, errors=error.errors, **error.context)
    if isinstance(error, PageRefused):
        return page(request, "error.html", error.status_code, message=error.text)
    key = {
        404: "error.not_found",
        403: "error.forbidden",
        409: "error.conflict",
        410: "error.gone",
    }.get(error.status_code, "error.generic")
    status = error.status_code if error.status_code < 500 else 503
    return page(request, "error.html", status, message=gettext(key))


router = APIRouter(route_class=SpaceRoute, include_in_schema=False)


@dataclass(frozen=True)
class Record:
    """The record a page is about, and the signed-in person's standing on it."""

    patient_id: str
    name: str
    own: bool
    may_add: bool
    until: datetime | None
    kind: str


def space(services: Services) -> Space:
    cached: Space | None = getattr(services, "_web_space", None)
    if cached is None:
        cached = Space(services)
        services._web_space = cached  # type: ignore[attr-defined]
    return cached


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    data = request.scope.get("session")
    session = data if isinstance(data, SessionData) else SessionData()
    principal = session_principal(session)
    found: Services = request.app.state.services
    html = (
        environment()
        .get_template(template)
        .render(
            csrf=csrf_token(session),
            me=principal,
            my_name=session.get("name"),
            demo=bool(session.get("demo")) or (found.issuer is not None and principal is None),
            path=request.url.path,
            **context,
        )
    )
    return HTMLResponse(html, status_code=status, headers=csp.PAGE_HEADERS)


def see_other(url: str, message: str | None = None) -> RedirectResponse:
    if message:
        url += ("&" if "?" in url else "?") + urlencode({"ok": message})
    return RedirectResponse(url, status_code=303, headers=csp.PAGE_HEADERS)


def record_of(
    session: Any, services: Services, actor: Actor, data: SessionData, pid: str
) -> Record:
    if actor.own_patient_id == pid:
        return Record(pid, data.get("name") or gettext("record.mine"), True, True, None, "self")
    relationship = space(services).relationship(session, actor, pid)
    if relationship is None:
        raise RecordNotFound
    return Record(
        pid,
        relationship.name,
        False,
        relationship.may_add,
        relationship.until,
        relationship.kind,
    )


class RecordNotFound(VaultError):
    """A record the signed-in person neither owns nor acts for: as absent as any other."""

    status_code = 404

    def __init__(self) -> None:
        super().__init__("Record not found")


PatientId = Annotated[str, Path(max_length=64)]
DocumentId = Annotated[str, Path(max_length=64)]
OK = Annotated[str | None, Query(alias="ok", max_length=64)]
# Texts a redirect may ask the next page to show: keys of the catalog, nothing else.
NOTICES = frozenset(
    {
        "added",
        "deleted",
        "masked",
        "unmasked",
        "policy",
        "granted",
        "revoked",
        "withdrawn",
        "opened",
        "signed_out",
        "accepted",
        "export_requested",
        "email_sent",
        "email_events",
        "email_stopped",
        "email_removed",
        "reopened",
    }
)


def notice(ok: str | None) -> str | None:
    return gettext(f"notice.{ok}") if ok in NOTICES else None


# -- assets -----------------------------------------------------------------------------


@router.get("/static/{name}", dependencies=[public("the space's own scripts, styles and images")])
def asset(
    name: Annotated[str, Path(max_length=64, pattern=r"^[a-z0-9-]+\.[a-z0-9]+$")],
) -> Response:
    target = resources.files("vault.web").joinpath("static").joinpath(name)
    if not target.is_file():
        return Response(status_code=404, headers=csp.ASSET_HEADERS)
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(target.read_bytes(), media_type=media, headers=csp.ASSET_HEADERS)


# -- signing in and out -----------------------------------------------------------------


@router.get(
    "/",
    dependencies=[public("the sign-in page, or the list of records the signed-in person may open")],
)
async def home(request: Request, services: ServicesDep, data: WebSessionDep) -> Response:
    principal = session_principal(data)
    if principal is None:
        return page(
            request,
            "signin.html",
            provider=bool(request.app.state.web_oauth),
            demo_accounts=list(DEMO_ACCOUNTS.values()) if services.issuer is not None else [],
            notice=notice(request.query_params.get("ok")),
        )
    return await run_in_threadpool(_home, request, services, data, principal)


def _home(
    request: Request, services: Services, data: SessionData, principal: Principal
) -> Response:
    with services.session_factory.begin() as session:
        actor = services.access.actor(session, principal)
        relationships = space(services).relationships(session, actor)
        # A closed space, or an opposition to one (vault/web/lifetime.py).
        landing = lifetime(services).landing(session, actor)
        closed = lifetime(services).closed_represented(session, actor)
    own = actor.own_patient_id
    if principal.role is Role.PATIENT and not relationships:
        # A patient's own record, or the first visit that opens it.
        return see_other(landing or (f"/dossiers/{own}/documents" if own else "/bienvenue"))
    # Someone who acts for others (a parent for a child, say) chooses whose record.
    return page(request, "people.html", relationships=relationships, own=own, closed_records=closed)


@router.get("/login", dependencies=[public("signing in")])
async def login(request: Request, services: ServicesDep, data: WebSessionDep) -> Response:
    oauth: OAuth | None = request.app.state.web_oauth
    if oauth is None:
        return page(
            request,
            "signin.html",
            404 if services.issuer is None else 200,
            provider=False,
            demo_accounts=list(DEMO_ACCOUNTS.values()) if services.issuer is not None else [],
            notice=None,
            no_provider=True,
        )
    client = oauth.create_client(CLIENT)
    try:
        return await client.authorize_redirect(request, str(request.url_for("login_callback")))  # type: ignore[no-any-return]
    except (OAuthError, OSError, ValueError):
        log.warning("sign-in provider unreachable")
        return page(request, "error.html", 503, message=gettext("error.provider"))


@router.get("/login/callback", name="login_callback", dependencies=[public("signing in")])
async def login_callback(request: Request, services: ServicesDep, data: WebSessionDep) -> Response:
    oauth: OAuth | None = request.app.state.web_oauth
    if oauth is None:
        return see_other("/")
    client = oauth.create_client(CLIENT)
    try:
        token = await client.authorize_access_token(request)
        claims = dict(token.get("userinfo") or {})
        principal = principal_from_id_token(
            services.tokens, services.settings.web_oidc_issuer, claims
        )
    except (OAuthError, Unauthenticated, KeyError, ValueError, OSError) as error:
        log.info("sign-in refused", reason=type(error).__name__)
        return page(request, "error.html", 401, message=gettext("error.signin"))
    return await _start(
        request, services, data, principal, claims, str(token.get("id_token") or "")
    )


@router.post("/login/demo", dependencies=[CsrfDep, public("signing in to a demonstration account")])
async def demo_login(
    request: Request,
    services: ServicesDep,
    data: WebSessionDep,
    account: Annotated[str, Form(max_length=32)],
) -> Response:
    if services.issuer is None:
        # Without the embedded issuer there is nothing to sign a demonstration token.
        return page(request, "error.html", 404, message=gettext("error.not_found"))
    try:
        principal = demo_principal(services.issuer, services.tokens, account)
    except Unauthenticated:
        return page(request, "error.html", 400, message=gettext("error.signin"))
    name = DEMO_ACCOUNTS[account].name
    return await _start(request, services, data, principal, {"name": name}, "", demo=True)


async def _start(
    request: Request,
    services: Services,
    data: SessionData,
    principal: Principal,
    claims: dict[str, Any],
    id_token: str,
    *,
    demo: bool = False,
) -> Response:
    """A new session (a new id: what an attacker planted before sign-in opens nothing)."""

    def visit() -> datetime | None:
        with services.session_factory.begin() as session:
            return space(services).visit(session, principal)

    previous = await run_in_threadpool(visit)
    data.rotate(
        {
            PRINCIPAL_KEY: principal_record(principal),
            "name": principal.name or display_name(claims),
            "id_token": id_token,
            "demo": demo,
            "previous_visit": previous.isoformat() if previous else None,
        }
    )
    csrf_token(data)
    return see_other("/")


@router.get("/logout", dependencies=[public("signing out")])
def logout_page(request: Request, data: WebSessionDep) -> Response:
    if session_principal(data) is None:
        return see_other("/")
    return page(request, "logout.html")


@router.post("/logout", dependencies=[CsrfDep, public("signing out")])
async def logout(request: Request, services: ServicesDep, data: WebSessionDep) -> Response:
    """Ends the session here, then at the provider when it offers RP-initiated logout."""
    id_token = data.get("id_token")
    data.end()
    oauth: OAuth | None = request.app.state.web_oauth
    home_url = str(request.url_for("home"))
    if oauth is not None and id_token:
        client = oauth.create_client(CLIENT)
        try:
            metadata = await client.load_server_metadata()
        except (OAuthError, OSError, ValueError):
            metadata = {}
        end_session = metadata.get("end_session_endpoint")
        if end_session:
            query = urlencode(
                {
                    "id_token_hint": id_token,
                    "post_logout_redirect_uri": home_url,
                    "client_id": services.settings.web_oidc_client_id,
                }
            )
            return RedirectResponse(f"{end_session}?{query}", 303, headers=csp.PAGE_HEADERS)
    return see_other("/", "signed_out")


# -- first visit ------------------------------------------------------------------------


@router.get("/bienvenue", dependencies=[requires(reason="a page of text")])
def welcome(
    request: Request, services: ServicesDep, actor: WebActorDep, session: WebUnitOfWorkDep
) -> Response:
    # Someone who opposed the creation of their space is shown that first.
    landing = lifetime(services).landing(session, actor)
    if landing is not None:
        return see_other(landing)
    return page(request, "welcome.html")


@router.post("/bienvenue", dependencies=[CsrfDep, requires(Permission.PATIENT_CREATE)])
def open_record(
    principal: SignedInDep,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
) -> Response:
    if principal.role is not Role.PATIENT:
        return see_other("/")
    patient_id = space(services).open_record(session, actor, principal, data.get("name"))
    return see_other(f"/dossiers/{patient_id}/documents", "opened")


# -- documents --------------------------------------------------------------------------


def _since(data: SessionData) -> datetime | None:
    text = data.get("previous_visit")
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


@router.get(
    "/dossiers/{pid}", dependencies=[requires(reason="a redirect to the record's documents")]
)
def record_home(pid: PatientId, principal: SignedInDep) -> Response:
    return see_other(f"/dossiers/{quote(pid)}/documents")


@router.get("/dossiers/{pid}/documents", dependencies=[requires(Permission.DOCUMENT_SEARCH)])
def documents(
    request: Request,
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    principal: SignedInDep,
    ok: OK = None,
    categorie: Annotated[str | None, Query(max_length=16)] = None,
    apres: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    record = record_of(session, services, actor, data, pid)
    if record.own and actor.own_record_closed:
        return see_other(f"/dossiers/{quote(pid)}/fermeture")
    listing = space(services).documents(
        session, actor, pid, category=categorie or None, cursor=apres, since=_since(data)
    )
    unread = space(services).unread_count(session, principal, pid) if record.own else 0
    return page(
        request,
        "documents.html",
        record=record,
        listing=listing,
        category=categorie or "",
        cursor=apres,
        unread=unread,
        notice=notice(ok),
        nav="documents",
    )


@router.get(
    "/dossiers/{pid}/documents/{did}",
    dependencies=[requires(Permission.DOCUMENT_READ, Permission.DOCUMENT_CONTENT)],
)
def document(
    request: Request,
    pid: PatientId,
    did: DocumentId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    ok: OK = None,
) -> Response:
    record = record_of(session, services, actor, data, pid)
    row = space(services).document(session, actor, pid, did)
    viewer = space(services).viewer(session, actor, row)
    return page(
        request,
        "document.html",
        record=record,
        doc=row,
        viewer=viewer,
        notice=notice(ok),
        nav="documents",
    )


@router.get(
    "/dossiers/{pid}/documents/{did}/contenu",
    dependencies=[requires(Permission.DOCUMENT_READ, Permission.DOCUMENT_CONTENT)],
)
def content(
    pid: PatientId,
    did: DocumentId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    telecharger: Annotated[bool, Query()] = False,
) -> Response:
    row = space(services).document(session, actor, pid, did)
    content_type, body = space(services).content(session, actor, row)
    media = content_type.split(";", 1)[0].strip().lower()
    inline = not telecharger and (media == "application/pdf" or media.startswith("image/"))
    extension = mimetypes.guess_extension(media) or ".bin"
    filename = f"{short_date(row.date).replace('/', '-')}-{did[:8]}{extension}"
    disposition = "inline" if inline else "attachment"
    headers = {
        **csp.CONTENT_HEADERS,
        "Content-Disposition": f'{disposition}; filename="{filename}"',
    }
    if not inline:
        # Whatever it contains, a downloaded document never runs in the vault's origin.
        headers["Content-Security-Policy"] += "; sandbox"
    return Response(body, media_type=content_type, headers=headers)


def _deletion_context(
    session: Any, services: Services, actor: Actor, data: SessionData, pid: str, did: str
) -> dict[str, Any]:
    record = record_of(session, services, actor, data, pid)
    row = space(services).document(session, actor, pid, did)
    return {"record": record, "doc": row, "nav": "documents"}


@router.get(
    "/dossiers/{pid}/documents/{did}/supprimer", dependencies=[requires(Permission.DOCUMENT_READ)]
)
def confirm_delete(
    request: Request,
    pid: PatientId,
    did: DocumentId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
) -> Response:
    return page(
        request, "delete.html", **_deletion_context(session, services, actor, data, pid, did)
    )


@router.post(
    "/dossiers/{pid}/documents/{did}/supprimer",
    dependencies=[CsrfDep, requires(Permission.DOCUMENT_DELETE)],
)
def delete(
    pid: PatientId,
    did: DocumentId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
) -> Response:
    space(services).delete(session, actor, did)
    return see_other(f"/dossiers/{quote(pid)}/documents", "deleted")


@router.post(
    "/dossiers/{pid}/documents/{did}/masquage",
    dependencies=[CsrfDep, requires(Permission.DOCUMENT_UPDATE)],
)
def mask(
    pid: PatientId,
    did: DocumentId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    masque: Annotated[str, Form(max_length=3)],
    retour: Annotated[str, Form(max_length=16)] = "document",
) -> Response:
    masked = masque == "oui"
    space(services).mask(session, actor, pid, did, masked=masked)
    target = (
        f"/dossiers/{quote(pid)}/acces"
        if retour == "acces"
        else f"/dossiers/{quote(pid)}/documents/{quote(did)}"
    )
    return see_other(target, "masked" if masked else "unmasked")


def _add_context(record: Record) -> dict[str, Any]:
    terms = terminology()
    return {
        "record": record,
        "types": [(code, terms.types.get(code, code)) for code in terms.patient_types],
        "nav": "add",
    }


@router.get(
    "/dossiers/{pid}/ajouter",
    dependencies=[requires(reason="an empty form, for a record the signed-in person may open")],
)
def add_form(
    request: Request,
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
) -> Response:
    record = record_of(session, services, actor, data, pid)
    return page(request, "add.html", values={}, errors={}, **_add_context(record))


@router.post(
    "/dossiers/{pid}/ajouter", dependencies=[CsrfDep, requires(Permission.DOCUMENT_CREATE)]
)
async def add(
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    fichier: Annotated[UploadFile | None, File()] = None,
    titre: Annotated[str, Form(max_length=1000)] = "",
    type: Annotated[str, Form(max_length=32)] = "",
    date: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    upload = fichier
    body = await upload.read() if upload is not None else b""
    filename = (upload.filename or "") if upload is not None else ""
    content_type = (upload.content_type or "") if upload is not None else ""
    if content_type in ("", "application/octet-stream"):
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"

    def store() -> Response:
        record = record_of(session, services, actor, data, pid)
        try:
            document_id = space(services).add(
                session,
                actor,
                pid,
                title=titre,
                type_code=type,
                when=date,
                filename=filename,
                content_type=content_type,
                data=body,
            )
        except FormErrors as error:
            error.template = "add.html"
            error.context = {
                "values": {"titre": titre, "type": type, "date": date},
                **_add_context(record),
            }
            raise
        return see_other(f"/dossiers/{quote(pid)}/documents/{quote(document_id)}", "added")

    return await run_in_threadpool(store)


# -- who can see my record --------------------------------------------------------------


def _access_context(
    session: Any, services: Services, actor: Actor, data: SessionData, pid: str
) -> dict[str, Any]:
    record = record_of(session, services, actor, data, pid)
    the_space = space(services)
    view = the_space.policy(session, actor, pid)
    masked = the_space.documents(
        session, actor, pid, category=None, cursor=None, since=None, count=100, masked_only=True
    )
    return {
        "record": record,
        "treating": the_space.people(view, EntryKind.TREATING_DOCTOR),
        "care_team": the_space.people(view, EntryKind.CARE_TEAM),
        "point_of_care": the_space.people(view, EntryKind.POINT_OF_CARE),
        "blocked": the_space.people(view, EntryKind.BLOCK),
        "emergencies": the_space.people(view, EntryKind.EMERGENCY),
        "emergency_on": not any(
            entry.kind == EntryKind.EMERGENCY_OPT_OUT for entry in view.entries
        ),
        "masked": masked.rows,
        "nav": "access",
    }


@router.get("/dossiers/{pid}/acces", dependencies=[requires(Permission.POLICY_READ)])
def access(
    request: Request,
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    ok: OK = None,
) -> Response:
    context = _access_context(session, services, actor, data, pid)
    return page(request, "access.html", errors={}, values={}, notice=notice(ok), **context)


KINDS = {
    "medecin-traitant": EntryKind.TREATING_DOCTOR,
    "equipe": EntryKind.CARE_TEAM,
    "blocage": EntryKind.BLOCK,
    "consentement": EntryKind.POINT_OF_CARE,
}


@router.post(
    "/dossiers/{pid}/acces/{kind}/ajouter",
    dependencies=[CsrfDep, requires(Permission.POLICY_MANAGE)],
)
def access_add(
    pid: PatientId,
    kind: Annotated[str, Path(max_length=32)],
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    rpps: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    entry_kind = KINDS.get(kind)
    if entry_kind is None or entry_kind is EntryKind.POINT_OF_CARE:
        raise RecordNotFound
    try:
        space(services).add_professional(session, actor, pid, entry_kind, rpps)
    except FormErrors as error:
        error.errors = {kind: error.errors.get("professional", "")}
        error.template = "access.html"
        error.context = {
            "values": {kind: rpps},
            "notice": None,
            **_access_context(session, services, actor, data, pid),
        }
        raise
    return see_other(f"/dossiers/{quote(pid)}/acces", "policy")


@router.post(
    "/dossiers/{pid}/acces/{kind}/retirer",
    dependencies=[CsrfDep, requires(Permission.POLICY_MANAGE)],
)
def access_remove(
    pid: PatientId,
    kind: Annotated[str, Path(max_length=32)],
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    professionnel: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    entry_kind = KINDS.get(kind)
    if entry_kind is None:
        raise RecordNotFound
    idnps = professionnel or None
    space(services).remove_professional(session, actor, pid, entry_kind, idnps)
    return see_other(f"/dossiers/{quote(pid)}/acces", "policy")


@router.post(
    "/dossiers/{pid}/acces/urgence", dependencies=[CsrfDep, requires(Permission.POLICY_MANAGE)]
)
def access_emergency(
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    urgence: Annotated[str, Form(max_length=3)],
) -> Response:
    space(services).set_emergency(session, actor, pid, on=urgence == "oui")
    return see_other(f"/dossiers/{quote(pid)}/acces", "policy")


# -- who looked at my record ------------------------------------------------------------


@router.get("/dossiers/{pid}/historique", dependencies=[requires(Permission.AUDIT_READ)])
def history(
    request: Request,
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    role: Annotated[str | None, Query(max_length=16)] = None,
    du: Annotated[str | None, Query(max_length=10)] = None,
    au: Annotated[str | None, Query(max_length=10)] = None,
    apres: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    record = record_of(session, services, actor, data, pid)
    rows, next_cursor = space(services).history(
        session,
        actor,
        pid,
        role=role or None,
        since=parse_date(du),
        until=parse_date(au),
        cursor=apres,
    )
    filters = {"role": role or "", "du": du or "", "au": au or ""}
    next_url = None
    if next_cursor:
        next_url = "?" + urlencode(
            {**{k: v for k, v in filters.items() if v}, "apres": next_cursor}
        )
    return page(
        request,
        "history.html",
        record=record,
        rows=rows,
        roles=HISTORY_ROLES,
        filters=filters,
        next_url=next_url,
        nav="history",
    )


@router.get("/dossiers/{pid}/historique/{eid}/recu", dependencies=[requires(Permission.AUDIT_READ)])
def receipt(
    request: Request,
    pid: PatientId,
    eid: Annotated[int, Path(ge=1, le=2**63 - 1)],
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
) -> Response:
    body = space(services).receipt(session, actor, pid, eid)
    if body is None:
        record = record_of(session, services, actor, data, pid)
        return page(
            request,
            "error.html",
            409,
            message=gettext("receipt.pending"),
            record=record,
            nav="history",
        )
    return Response(
        json.dumps(body, ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={
            **csp.CONTENT_HEADERS,
            "Content-Security-Policy": csp.render(csp.CONTENT_POLICY) + "; sandbox",
            "Content-Disposition": f'attachment; filename="recu-acces-{eid}.json"',
        },
    )


# -- caregivers -------------------------------------------------------------------------


def _caregivers_context(
    session: Any, services: Services, actor: Actor, data: SessionData, pid: str
) -> dict[str, Any]:
    record = record_of(session, services, actor, data, pid)
    active, past, waiting = space(services).delegations(session, actor, pid)
    terms = terminology()
    return {
        "record": record,
        "active": active,
        "past": past,
        "waiting": waiting,
        "categories": sorted(terms.categories.items(), key=lambda item: item[1]),
        "nav": "caregivers",
    }


@router.get("/dossiers/{pid}/aidants", dependencies=[requires(Permission.POLICY_READ)])
def caregivers(
    request: Request,
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    ok: OK = None,
) -> Response:
    context = _caregivers_context(session, services, actor, data, pid)
    return page(request, "caregivers.html", errors={}, values={}, notice=notice(ok), **context)


@router.post(
    "/dossiers/{pid}/aidants", dependencies=[CsrfDep, requires(Permission.DELEGATION_GRANT)]
)
def invite(
    request: Request,
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    droits: Annotated[str, Form(max_length=16)] = "lire",
    categories: Annotated[list[str] | None, Form(max_length=16)] = None,
    jusqu_au: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """The invitation's code is shown on this one page, once: only its hash is kept."""
    chosen = categories or []
    record = record_of(session, services, actor, data, pid)
    try:
        code, code_until = space(services).invite(
            session, actor, pid, may_add=droits == "ajouter", categories=chosen, until=jusqu_au
        )
    except FormErrors as error:
        error.template = "caregivers.html"
        error.context = {
            "values": {"droits": droits, "categories": chosen, "jusqu_au": jusqu_au},
            "notice": None,
            **_caregivers_context(session, services, actor, data, pid),
        }
        raise
    link = f"{services.settings.base_url.rstrip('/')}/invitation?{urlencode({'code': code})}"
    return page(
        request,
        "invitation.html",
        record=record,
        code=code,
        link=link,
        code_until=code_until,
        nav="caregivers",
    )


@router.get("/invitation", dependencies=[requires(reason="a form for an invitation's code")])
def invitation_form(
    request: Request,
    principal: SignedInDep,
    code: Annotated[str, Query(max_length=128)] = "",
) -> Response:
    return page(request, "accept.html", values={"code": code}, errors={})


@router.post("/invitation", dependencies=[CsrfDep, requires(Permission.INVITATION_ACCEPT)])
def accept_invitation(
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    code: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    try:
        patient_id = space(services).accept(session, actor, code)
    except FormErrors as error:
        error.template = "accept.html"
        error.context = {"values": {"code": code}}
        raise
    return see_other(f"/dossiers/{quote(patient_id)}/documents", "accepted")


@router.post(
    "/dossiers/{pid}/aidants/{eid}/revoquer",
    dependencies=[CsrfDep, requires(Permission.DELEGATION_REVOKE)],
)
def revoke(
    pid: PatientId,
    eid: Annotated[str, Path(max_length=64)],
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    principal: SignedInDep,
) -> Response:
    space(services).revoke(session, actor, pid, eid)
    if principal.role is Role.CAREGIVER:
        return see_other("/", "revoked")
    return see_other(f"/dossiers/{quote(pid)}/aidants", "revoked")


@router.post(
    "/dossiers/{pid}/aidants/invitations/{iid}/retirer",
    dependencies=[CsrfDep, requires(Permission.DELEGATION_REVOKE)],
)
def withdraw(
    pid: PatientId,
    iid: Annotated[str, Path(max_length=64)],
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
) -> Response:
    space(services).withdraw(session, actor, pid, iid)
    return see_other(f"/dossiers/{quote(pid)}/aidants", "withdrawn")


# -- notifications ----------------------------------------------------------------------


@router.get("/dossiers/{pid}/notifications", dependencies=[requires(Permission.AUDIT_READ)])
def notifications(
    request: Request,
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    principal: SignedInDep,
) -> Response:
    record = record_of(session, services, actor, data, pid)
    rows = space(services).notifications(session, actor, principal, pid)
    return page(request, "notifications.html", record=record, rows=rows, nav="notifications")


@router.post(
    "/dossiers/{pid}/notifications/lues", dependencies=[CsrfDep, requires(Permission.AUDIT_READ)]
)
def notifications_read(
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    principal: SignedInDep,
) -> Response:
    space(services).notifications(session, actor, principal, pid)
    space(services).mark_notifications_read(session, principal)
    return see_other(f"/dossiers/{quote(pid)}/notifications")


# -- taking everything away ------------------------------------------------------------


def _export_context(
    session: Any, services: Services, actor: Actor, data: SessionData, pid: str
) -> dict[str, Any]:
    record = record_of(session, services, actor, data, pid)
    rows = space(services).exports(session, actor, pid)
    return {
        "record": record,
        "rows": rows,
        "running": any(row.in_progress for row in rows),
        "ttl_hours": services.settings.export_ttl_hours,
        "daily_limit": services.settings.export_daily_limit,
        "nav": "export",
    }


@router.get("/dossiers/{pid}/export", dependencies=[requires(Permission.RECORD_EXPORT)])
def export_page(
    request: Request,
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    ok: OK = None,
) -> Response:
    context = _export_context(session, services, actor, data, pid)
    return page(request, "export.html", errors={}, notice=notice(ok), **context)


@router.post("/dossiers/{pid}/export", dependencies=[CsrfDep, requires(Permission.RECORD_EXPORT)])
def export_request(
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
) -> Response:
    record_of(session, services, actor, data, pid)
    try:
        space(services).request_export(session, actor, pid)
    except FormErrors as error:
        error.template = "export.html"
        error.context = {"notice": None, **_export_context(session, services, actor, data, pid)}
        raise
    return see_other(f"/dossiers/{quote(pid)}/export", "export_requested")


@router.get(
    "/dossiers/{pid}/export/{eid}/archive", dependencies=[requires(Permission.RECORD_EXPORT)]
)
def export_archive(
    pid: PatientId,
    eid: Annotated[str, Path(max_length=64)],
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
) -> Response:
    download = space(services).export_archive(session, actor, pid, eid)
    return StreamingResponse(
        download.chunks,
        media_type="application/zip",
        headers={
            **csp.CONTENT_HEADERS,
            "Content-Security-Policy": csp.render(csp.CONTENT_POLICY) + "; sandbox",
            "Content-Length": str(download.size),
            "Content-Disposition": f'attachment; filename="{download.file_name}"',
        },
    )


# -- e-mail preferences -----------------------------------------------------------------


def _email_context(
    session: Any, services: Services, actor: Actor, data: SessionData, pid: str
) -> dict[str, Any]:
    record = record_of(session, services, actor, data, pid)
    return {
        "record": record,
        "prefs": space(services).email_preferences(session, actor, pid),
        "mail_on": bool(services.settings.smtp_host),
        "hours": services.settings.email_confirmation_hours,
        "values": {},
        "nav": "notifications",
    }


EMAILS = "/dossiers/{pid}/notifications/courriel"


@router.get(EMAILS, dependencies=[requires(Permission.NOTIFICATIONS_READ)])
def emails(
    request: Request,
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    ok: OK = None,
) -> Response:
    context = _email_context(session, services, actor, data, pid)
    return page(request, "emails.html", errors={}, notice=notice(ok), **context)


@router.post(EMAILS + "/adresse", dependencies=[CsrfDep, requires(Permission.NOTIFICATIONS_MANAGE)])
def email_address(
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    adresse: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    record_of(session, services, actor, data, pid)
    try:
        space(services).set_email_address(session, actor, pid, adresse)
    except FormErrors as error:
        error.template = "emails.html"
        context = _email_context(session, services, actor, data, pid)
        error.context = {**context, "notice": None, "values": {"adresse": adresse}}
        raise
    return see_other(f"/dossiers/{quote(pid)}/notifications/courriel", "email_sent")


@router.post(
    EMAILS + "/evenements", dependencies=[CsrfDep, requires(Permission.NOTIFICATIONS_MANAGE)]
)
def email_events(
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
    evenements: Annotated[list[str] | None, Form(max_length=32)] = None,
) -> Response:
    record_of(session, services, actor, data, pid)
    space(services).set_email_events(session, actor, pid, evenements or [])
    return see_other(f"/dossiers/{quote(pid)}/notifications/courriel", "email_events")


@router.post(EMAILS + "/arreter", dependencies=[CsrfDep, requires(Permission.NOTIFICATIONS_MANAGE)])
def email_stop(
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
) -> Response:
    record_of(session, services, actor, data, pid)
    space(services).set_email_events(session, actor, pid, [])
    return see_other(f"/dossiers/{quote(pid)}/notifications/courriel", "email_stopped")


@router.post(EMAILS + "/oublier", dependencies=[CsrfDep, requires(Permission.NOTIFICATIONS_MANAGE)])
def email_forget(
    pid: PatientId,
    services: ServicesDep,
    actor: WebActorDep,
    session: WebUnitOfWorkDep,
    data: WebSessionDep,
) -> Response:
    record_of(session, services, actor, data, pid)
    space(services).remove_email_address(session, actor, pid)
    return see_other(f"/dossiers/{quote(pid)}/notifications/courriel", "email_removed")


# -- the links in e-mails (no session: the link is the credential) -----------------------

LinkText = Annotated[str, Query(max_length=128)]


def link_page(
    request: Request, key: str, *, action: str | None = None, status: int = 200
) -> HTMLResponse:
    """The page an e-mailed link opens (``link.<key>.*`` in the catalog): a button that
    posts to ``action``, or, without one, what happened. Also the API's links' pages
    (vault/api/notifications.py), so both look and read alike."""
    return page(
        request,
        "link.html",
        status,
        title=gettext(f"link.{key}.title"),
        text=gettext(f"link.{key}.text"),
        button=gettext(f"link.{key}.button") if action else None,
        action=action,
        refused=status != 200,
    )


# Opening a link only shows a button: mail scanners open links, and must not confirm or
# opt out for the person.
@router.get(CONFIRM_LINK, dependencies=[public("the e-mailed link is the credential")])
def confirm_link(request: Request, token: LinkText = "") -> Response:
    return link_page(request, "confirm", action=f"{CONFIRM_LINK}?{urlencode({'token': token})}")


@router.post(
    CONFIRM_LINK,
    dependencies=[public("the e-mailed link is the credential", Permission.NOTIFICATIONS_MANAGE)],
)
def confirm_address(request: Request, services: ServicesDep, token: LinkText = "") -> Response:
    try:
        with unit_of_work(services.session_factory) as session:
            services.notifications.confirm(session, token)
    except LinkRefused:
        return link_page(request, "refused", status=404)
    return link_page(request, "confirmed")


@router.get(UNSUBSCRIBE_LINK, dependencies=[public("the e-mailed link is the credential")])
def unsubscribe_link(request: Request, record: LinkText = "", token: LinkText = "") -> Response:
    query = urlencode({"record": record, "token": token})
    return link_page(request, "unsubscribe", action=f"{UNSUBSCRIBE_LINK}?{query}")


@router.post(
    UNSUBSCRIBE_LINK,
    dependencies=[public("the e-mailed link is the credential", Permission.NOTIFICATIONS_MANAGE)],
)
def unsubscribe(
    request: Request, services: ServicesDep, record: LinkText = "", token: LinkText = ""
) -> Response:
    """The opt-out, from the page's button or the mail client's one-click POST (RFC 8058:
    its body, ``List-Unsubscribe=One-Click``, says nothing more than the link)."""
    try:
        with unit_of_work(services.session_factory) as session:
            services.notifications.unsubscribe(session, record, token)
    except LinkRefused:
        return link_page(request, "refused", status=404)
    return link_page(request, "unsubscribed")


def install(app: Any, services: Services) -> None:
    """The space's session middleware and sign-in client; its routes (``router``) are
    included by the app factory, after the API's (vault/api/app.py says why)."""
    settings = services.settings
    store = SessionStore(
        services.session_factory,
        idle=timedelta(minutes=settings.web_session_idle_minutes),
        absolute=timedelta(hours=settings.web_session_absolute_hours),
    )
    app.state.web_sessions = store
    app.state.web_oauth = build_oauth(settings)
    app.add_middleware(
        SessionMiddleware, store=store, base_url=settings.base_url, paths=is_space_path
    )


# The pages about a record's lifetime are declared on this router, in their own module.
from vault.web import lifetime_pages  # noqa: E402

__all__ = ["PUBLIC_PATHS", "install", "lifetime_pages", "router"]
