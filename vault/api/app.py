"""The application factory. Every router except the public one is mounted under a parent
that requires an authenticated principal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI

from vault import __version__
from vault.api import errors
from vault.api.deps import authenticate
from vault.api.fhir import binary, documents, metadata, patients, transaction
from vault.api.public import router as public_router
from vault.services import Services, build_services
from vault.settings import Settings, get_settings

PUBLIC_PATHS = frozenset(
    {
        "/fhir/metadata",
        "/.well-known/jwks.json",
        "/.well-known/smart-configuration",
        "/healthz",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    }
)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or get_settings()
    built = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if services is None:
            built.close()

    app = FastAPI(
        title="vault",
        version=__version__,
        description="Patient health-document vault: FHIR R4 (IHE MHD / ANS PDSm), encrypted, patient-controlled, audited.",
        lifespan=lifespan,
    )
    app.state.services = built
    errors.install(app)

    app.include_router(public_router)
    app.include_router(metadata.router)

    protected = APIRouter(dependencies=[Depends(authenticate)])
    protected.include_router(transaction.router)
    protected.include_router(documents.router)
    protected.include_router(binary.router)
    protected.include_router(patients.router)
    app.include_router(protected)
    return app
