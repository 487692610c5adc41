"""Routes that answer without a token: discovery documents and liveness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from vault.api.deps import ServicesDep
from vault.errors import NotFound

router = APIRouter(tags=["Public"])


@router.get("/.well-known/jwks.json", summary="The embedded issuer's public keys")
def jwks(found: ServicesDep) -> Response:
    if found.issuer is None:
        raise NotFound("The embedded issuer is off")
    return JSONResponse(found.issuer.jwks())


@router.get("/.well-known/smart-configuration", summary="SMART App Launch 2 discovery")
def smart_configuration(found: ServicesDep) -> Response:
    base = found.settings.issuer
    document: dict[str, Any] = {
        "issuer": base,
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "token_endpoint": f"{base}/oauth/token",
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": [
            "system/DocumentReference.c",
            "system/DocumentReference.crus",
            "system/Binary.r",
            "system/*.cruds",
            "user/DocumentReference.cruds",
            "user/*.cruds",
            "patient/DocumentReference.rs",
            "patient/*.cruds",
        ],
        "response_types_supported": ["token"],
        "capabilities": [
            "client-confidential-asymmetric",
            "client-confidential-symmetric",
            "permission-v2",
        ],
    }
    return JSONResponse(document)


@router.get("/healthz", summary="The process is alive")
def healthz() -> Response:
    return JSONResponse({"status": "ok"})
