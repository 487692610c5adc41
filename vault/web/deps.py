"""Request dependencies of the patient's space: the session, the signed-in person, CSRF,
and the same one-transaction-per-request (with refusals recorded) as the API's."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Annotated

from anyio import CancelScope
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from vault.access.policy import Actor
from vault.access.service import SPACE
from vault.db import Session
from vault.http.deps import ServicesDep, commit
from vault.identity.principal import Principal
from vault.services import Services
from vault.web.sessions import SessionData, csrf_valid
from vault.web.signin import session_principal


class SignInRequired(Exception):
    """No live session: the person is sent to the sign-in page."""


class CsrfRefused(Exception):
    """A state-changing form without this session's CSRF token."""


async def web_session(request: Request) -> SessionData:
    data = request.scope.get("session")
    if not isinstance(data, SessionData):
        # The space's middleware gives every one of its paths a session.
        raise SignInRequired
    return data


WebSessionDep = Annotated[SessionData, Depends(web_session)]


async def signed_in(request: Request, data: WebSessionDep) -> Principal:
    """The person this session signed in, checked again on every request; the space's
    guard, as ``authenticate`` is the API's."""
    principal = session_principal(data)
    if principal is None:
        raise SignInRequired
    source_ip = request.client.host if request.client else None
    principal = dataclasses.replace(principal, source_ip=source_ip)
    request.state.principal = principal
    return principal


SignedInDep = Annotated[Principal, Depends(signed_in)]


async def csrf_checked(request: Request, data: WebSessionDep, services: ServicesDep) -> None:
    """Every state-changing form carries the session's token (and, where the browser
    says where it comes from, comes from the vault's own pages)."""
    origin = request.headers.get("origin")
    # "null" is what Chromium sends under Referrer-Policy: no-referrer; the token decides.
    expected = {
        "null",
        f"{request.url.scheme}://{request.url.netloc}",
        services.settings.base_url.rstrip("/"),
    }
    if origin and origin not in expected:
        raise CsrfRefused
    form = await request.form()
    sent = form.get("csrf_token")
    if not csrf_valid(data, sent if isinstance(sent, str) else None):
        raise CsrfRefused


CsrfDep = Depends(csrf_checked)


async def web_unit_of_work(
    request: Request, services: ServicesDep, principal: SignedInDep
) -> AsyncIterator[Session]:
    """The request's unit of work, as vault/api/deps.py's ``unit_of_work``: commit on
    success, roll back on any error, then record a refusal or a failed change on its own.

    The space's routes turn errors into pages (``SpaceRoute``) before this dependency
    ends, so an error reaches it as ``request.state.space_error`` rather than raised: the
    page is shown and the transaction still rolls back."""
    session = services.session_factory()
    failed: BaseException | None = None
    try:
        yield session
        failed = getattr(request.state, "space_error", None)
        if failed is None:
            await run_in_threadpool(commit, session)
    except BaseException as error:
        await _end_failed(request, services, principal, session, error)
        raise
    if failed is not None:
        await _end_failed(request, services, principal, session, failed)


async def _end_failed(
    request: Request,
    services: Services,
    principal: Principal,
    session: Session,
    error: BaseException,
) -> None:
    """Roll back, then let access record what must outlive the rollback (a refusal, a
    failed form); shielded, so that a cancellation cannot abandon it halfway."""
    with CancelScope(shield=True):
        await run_in_threadpool(
            services.access.end_failed,
            services.session_factory,
            session,
            principal,
            error,
            surface=SPACE,
            method=request.method,
        )


WebUnitOfWorkDep = Annotated[Session, Depends(web_unit_of_work, scope="function")]


async def web_actor(
    services: ServicesDep, principal: SignedInDep, session: WebUnitOfWorkDep
) -> Actor:
    return await run_in_threadpool(services.access.actor, session, principal)


WebActorDep = Annotated[Actor, Depends(web_actor)]
