"""The application factory. Every router except the public one is mounted under a parent
that requires an authenticated principal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI

from vault import __version__
from vault.api import access as access_api
from vault.api import audit as audit_api
from vault.api import docs, errors, middleware, openapi
from vault.api import exports as exports_api
from vault.api import notifications as notifications_api
from vault.api import records as records_api
from vault.api.deps import authenticate
from vault.api.fhir import (
    audit_events,
    binary,
    consent,
    documents,
    everything,
    lists,
    metadata,
    patients,
    transaction,
)
from vault.api.fhir.fast_binary import FastBinaryRead
from vault.api.oauth import router as oauth_router
from vault.api.public import router as public_router
from vault.identity.throttle import Throttle
from vault.services import Services, build_services
from vault.services.background import AuditWorkers
from vault.settings import Settings, get_settings
from vault.web import routes as web

PUBLIC_PATHS = frozenset(
    {
        "/fhir/metadata",
        "/.well-known/jwks.json",
        "/.well-known/smart-configuration",
        "/oauth/token",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/docs/assets",
    }
    # The links in e-mails: the link is the credential (vault/api/notifications.py).
    | notifications_api.PUBLIC_PATHS
)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or get_settings()
    built = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # A served app (which owns its services) also signs checkpoints and delivers
        # notifications; an app built around given services (tests) leaves that to them.
        workers = AuditWorkers(built) if services is None else None
        if workers is not None:
            workers.start()
        yield
        if workers is not None:
            workers.stop()
        if services is None:
            built.close()

    app = FastAPI(
        title="vault",
        version=__version__,
        description="Patient health-document vault: FHIR R4 (IHE MHD / ANS PDSm), encrypted, patient-controlled, audited.",
        lifespan=lifespan,
        # Served by vault.api.docs from the package's own copy of Swagger UI.
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = built
    # Per process: several replicas each count on their own (docs/authentication.md).
    app.state.throttle = Throttle.from_settings(settings)
    errors.install(app)
    # Innermost of the middlewares: a download of the usual shape is answered here, with
    # the route's own functions, before FastAPI routes it (vault/api/fhir/fast_binary.py).
    app.add_middleware(FastBinaryRead)
    # The patient's space (vault/web): its routes are guarded by a session, not a token.
    # Its middleware goes here (inside those of middleware.install); its routes last, below.
    web.install(app, built)
    middleware.install(app, settings, built)
    openapi.install(app, PUBLIC_PATHS)

    docs.install(app)
    app.include_router(public_router)
    app.include_router(oauth_router)
    app.include_router(metadata.router)
    app.include_router(notifications_api.public_router)

    protected = APIRouter(dependencies=[Depends(authenticate)])
    protected.include_router(transaction.router)
    protected.include_router(documents.router)
    protected.include_router(binary.router)
    protected.include_router(patients.router)
    protected.include_router(everything.router)
    protected.include_router(lists.router)
    protected.include_router(audit_events.router)
    protected.include_router(audit_api.router)
    protected.include_router(consent.router)
    protected.include_router(access_api.router)
    protected.include_router(notifications_api.router)
    protected.include_router(exports_api.router)
    protected.include_router(records_api.router)
    app.include_router(protected)
    # Last: a request is matched against the routes in order, about 6 microseconds each, and
    # the space's pages (whose paths no API route shares) came before the API's reads,
    # the busiest routes (docs/performance.md).
    app.include_router(web.router)
    return app
