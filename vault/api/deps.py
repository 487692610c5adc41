"""Request dependencies: services, the unit of work, the authenticated principal, bodies."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated, TypeVar

from anyio import CancelScope
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vault.access.policy import Actor
from vault.access.service import API, take_refusals
from vault.db import Session
from vault.errors import (
    BadRequest,
    MissingToken,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
    VaultError,
)
from vault.fhir import wire
from vault.http.deps import commit
from vault.identity.principal import Principal, Role
from vault.identity.throttle import Throttle
from vault.services import Services

T = TypeVar("T")

bearer = HTTPBearer(auto_error=False, description="An OAuth 2 access token (JWT)")


def services_of(request: Request) -> Services:
    """The services, for the dependencies below: read from the app rather than through
    ``ServicesDep``, because FastAPI solves a dependency's sub-dependencies again at every
    place it appears (before looking in its cache), and these appear in every route."""
    services: Services = request.app.state.services
    return services


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """A valid bearer token or 401; 429 for an address that keeps presenting bad ones. A
    missing token is not counted as a failure: it is how every client first meets the
    WWW-Authenticate challenge.

    Async although it verifies a signature: that is a fraction of a millisecond of CPU and
    no I/O, cheaper on the event loop than a trip to the thread pool."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise MissingToken("A bearer access token is required")
    principal = principal_of_token(
        services_of(request),
        request.app.state.throttle,
        credentials.credentials,
        request.client.host if request.client else None,
    )
    request.state.principal = principal
    return principal


def principal_of_token(
    services: Services, throttle: Throttle, token: str, source_ip: str | None
) -> Principal:
    """The principal a bearer token stands for, with the address it came from; the
    throttles count failed tokens per address and turn away actors refused too often."""
    keys = [f"ip:{source_ip or 'unknown'}"]
    throttle.guard_authentication(keys)
    try:
        principal = services.tokens.validate(token)
    except Unauthenticated:
        throttle.failed_authentication(keys)
        raise
    throttle.guard_refusals(principal)
    return dataclasses.replace(principal, source_ip=source_ip)


PrincipalDep = Annotated[Principal, Depends(authenticate)]


async def unit_of_work(request: Request, principal: PrincipalDep) -> AsyncIterator[Session]:
    """The request's unit of work, one database transaction: commit when the endpoint returns, roll back on any
    error -- then record the refusal or failure on its own, since it must outlive the
    rollback.

    Async so that opening the session (which touches no connection until the endpoint's
    first statement) costs no thread hop; everything that talks to the database runs in
    the thread pool, one hop for the commit -- none when the endpoint ended the transaction
    in its own thread already (``end_reads``).

    Whatever the outcome, the refusals the request met count towards its actor's throttle."""
    services = services_of(request)
    throttle: Throttle = request.app.state.throttle
    session = services.session_factory()
    try:
        yield session
        count_refusals(throttle, principal, session)
        if session.in_transaction():
            await run_in_threadpool(commit, session)
        else:
            session.close()  # nothing is open: no statement, no I/O
    except VaultError as error:
        count_refusals(throttle, principal, session)
        await run_in_threadpool(end_failed, services, session, principal, error, request.method)
        raise
    except BaseException as error:
        # Cancelled or failed unexpectedly: the thread must not be abandoned mid-rollback,
        # so this one is shielded from the cancellation that may have brought us here.
        with CancelScope(shield=True):
            await run_in_threadpool(end_failed, services, session, principal, error, request.method)
        raise


def in_unit_of_work(
    services: Services,
    throttle: Throttle,
    principal: Principal,
    method: str,
    work: Callable[[Session], T],
) -> T:
    """``unit_of_work`` for a caller already in the thread pool (vault.api.fhir.fast_binary):
    the same commit, the same refusals counted, the same record of a failure."""
    session = services.session_factory()
    try:
        result = work(session)
        count_refusals(throttle, principal, session)
        if session.in_transaction():
            commit(session)
        else:
            session.close()
        return result
    except VaultError as error:
        count_refusals(throttle, principal, session)
        end_failed(services, session, principal, error, method)
        raise
    except BaseException as error:
        end_failed(services, session, principal, error, method)
        raise


def end_failed(
    services: Services, session: Session, principal: Principal, error: BaseException, method: str
) -> None:
    services.access.end_failed(
        services.session_factory, session, principal, error, surface=API, method=method
    )


def count_refusals(throttle: Throttle, principal: Principal, session: Session) -> None:
    refused = take_refusals(session)
    if refused:
        throttle.refused(principal, refused)


SessionDep = Annotated[Session, Depends(unit_of_work, scope="function")]


async def actor(request: Request, principal: PrincipalDep, session: SessionDep) -> Actor:
    # Only a patient's actor needs a query (their own record's id); the others are built
    # from the token alone, without a thread hop. (The reads that matter most, downloads
    # and searches, build it in their endpoint's thread instead: no hop at all.)
    services = services_of(request)
    if principal.role is Role.PATIENT:
        return await run_in_threadpool(services.access.actor, session, principal)
    return services.access.actor(session, principal)


ActorDep = Annotated[Actor, Depends(actor)]


def end_reads(session: Session) -> None:
    """For an endpoint that has read all it reads from the database (its audit entry
    committed, or waited for): ends the transaction in the endpoint's own thread, so that
    ``unit_of_work`` has no commit left to make and spares a hop to the thread
    pool. A failure here fails the request as a failed commit would."""
    session.commit()


def record_of(actor: Actor, patient_id: str) -> str:
    """The record a path names: 'me' is the caller's own (none: nothing is there)."""
    if patient_id == "me":
        if actor.own_patient_id is None:
            raise NotFound("Patient not found")
        return actor.own_patient_id
    return patient_id


async def read_body(request: Request, limit: int) -> bytes:
    """The body, bounded: declared length, actual length and gzip expansion all count."""
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit():
        # A number of more digits than any limit has is past it, whatever it says.
        wire.check_size(int(declared) if len(declared) < 19 else limit + 1, limit)
    encoding = (request.headers.get("content-encoding") or "identity").strip().lower()
    if encoding not in ("identity", "gzip", "deflate"):
        raise UnsupportedMediaType(f"Unsupported Content-Encoding {encoding}")
    inflater = zlib.decompressobj(wbits=47) if encoding != "identity" else None
    body = bytearray()
    async for chunk in request.stream():
        if inflater is None:
            body += chunk
        else:
            try:
                body += inflater.decompress(chunk, limit + 1 - len(body))
            except zlib.error:
                raise BadRequest("Request body is not valid compressed data") from None
            if inflater.unconsumed_tail:
                raise PayloadTooLarge(
                    f"Request body exceeds the limit of {limit} bytes once decompressed"
                )
        wire.check_size(len(body), limit)
    if inflater is not None and (not inflater.eof or inflater.unused_data):
        # A cut-off stream would otherwise pass for a shorter body.
        raise BadRequest("Request body is truncated or not a single compressed stream")
    return bytes(body)


async def fhir_body(request: Request) -> bytes:
    wire.require_json_media_type(request.headers.get("content-type"))
    return await read_body(request, services_of(request).settings.max_body_bytes)


FhirBody = Annotated[bytes, Depends(fhir_body)]


async def patch_body(request: Request) -> bytes:
    if wire.media_type(request.headers.get("content-type")) != "application/json-patch+json":
        wire.require_json_media_type(request.headers.get("content-type"))
    return await read_body(request, services_of(request).settings.max_body_bytes)


PatchBody = Annotated[bytes, Depends(patch_body)]
