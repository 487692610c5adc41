"""Routes that answer without a token: discovery documents, liveness, readiness, metrics."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from vault.errors import NotFound
from vault.http.deps import ServicesDep, public
from vault.observability import metrics
from vault.services import health

router = APIRouter(tags=["Public"])


@router.get(
    "/.well-known/jwks.json",
    summary="The embedded issuer's public keys",
    dependencies=[public("the embedded issuer's public keys")],
)
def jwks(services: ServicesDep) -> Response:
    if services.issuer is None:
        raise NotFound("The embedded issuer is off")
    return JSONResponse(services.issuer.jwks())


@router.get(
    "/.well-known/smart-configuration",
    summary="SMART App Launch 2 discovery",
    dependencies=[public("how to obtain a token (SMART configuration)")],
)
def smart_configuration(services: ServicesDep) -> Response:
    base = services.settings.issuer
    document: dict[str, Any] = {
        "issuer": base,
        "scopes_supported": [
            "system/DocumentReference.c",
            "system/DocumentReference.crus",
            "system/Binary.r",
            "system/Patient.cr",
            "system/*.cruds",
            "user/DocumentReference.cruds",
            "user/Binary.r",
            "user/*.cruds",
            "patient/DocumentReference.rs",
            "patient/Binary.r",
            "patient/*.cruds",
        ],
        "capabilities": ["permission-v2", "permission-v1"],
    }
    if services.oauth is not None:
        # The vault's own authorization server, for professional software (SMART Backend
        # Services); people sign in through the OpenID providers it trusts.
        document.update(
            {
                "jwks_uri": f"{base}/.well-known/jwks.json",
                "token_endpoint": f"{base}/oauth/token",
                "token_endpoint_auth_methods_supported": [
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256"],
                "grant_types_supported": ["client_credentials"],
            }
        )
        document["capabilities"] = [
            "client-confidential-asymmetric",
            "client-confidential-symmetric",
            *document["capabilities"],
        ]
    return JSONResponse(document)


@router.get(
    "/healthz",
    summary="The process is alive",
    dependencies=[public("liveness: says nothing but ok")],
)
def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="The database, blob store and key provider answer",
    responses={503: {"description": "Not ready; the body says nothing more"}},
    dependencies=[public("readiness: names failing components only")],
)
def readyz(services: ServicesDep) -> Response:
    if health.failing_components(services):
        return JSONResponse(
            {"status": "unavailable"},
            status_code=503,
            headers={"Retry-After": "5", "Cache-Control": "no-store"},
        )
    return JSONResponse({"status": "ready"}, headers={"Cache-Control": "no-store"})


@router.get(
    "/metrics",
    summary="Prometheus metrics (no identifiers); VAULT_METRICS_TOKEN, when set, guards it",
    response_class=PlainTextResponse,
    dependencies=[public("counters and timings, no health data; VAULT_METRICS_TOKEN may guard it")],
)
def prometheus_metrics(services: ServicesDep, request: Request) -> Response:
    # An empty VAULT_METRICS_TOKEN means unset, as for every other setting.
    expected = (
        services.settings.metrics_token.get_secret_value()
        if services.settings.metrics_token
        else ""
    )
    if expected and not _bearer_matches(request.headers.get("authorization"), expected):
        return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    body, content_type = metrics.render()
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


def _bearer_matches(header: str | None, expected: str) -> bool:
    scheme, _, presented = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), expected.encode()
    )
