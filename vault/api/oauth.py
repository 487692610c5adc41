"""``POST /oauth/token``: SMART Backend Services for professional software. Public (the
client authenticates in the request itself); answers in OAuth 2 JSON as RFC 6749 says,
except for throttling, which is an OperationOutcome with Retry-After like every 429."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from vault.api.deps import read_body
from vault.errors import NotFound
from vault.fhir import wire
from vault.http.deps import ServicesDep, public
from vault.identity.oauth import TokenRequest, TokenResponse, invalid_request

router = APIRouter(tags=["OAuth 2"])

MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 16

FORM_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "scope": {
                            "type": "string",
                            "example": "system/DocumentReference.c system/Binary.r",
                        },
                        "client_assertion_type": {
                            "type": "string",
                            "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
                        },
                        "client_assertion": {"type": "string"},
                    },
                }
            }
        },
    }
}


@router.post(
    "/oauth/token",
    summary="Token for professional software (client credentials, private_key_jwt)",
    openapi_extra=FORM_SCHEMA,
    response_class=JSONResponse,
    dependencies=[public("the client's own signed assertion is the credential")],
)
async def token(request: Request, services: ServicesDep) -> Response:
    if services.oauth is None:
        raise NotFound("The vault's token endpoint is off (VAULT_EMBEDDED_ISSUER=false)")
    body = await read_body(request, MAX_FORM_BYTES)
    form = _form(request.headers.get("content-type"), body)
    if isinstance(form, TokenResponse):
        return _render(form)
    token_request = TokenRequest(
        method=request.method,
        url=str(request.url),
        headers=dict(request.headers),
        form=form,
        client_ip=request.client.host if request.client else None,
    )
    issued = await run_in_threadpool(
        services.oauth.issue, token_request, request.app.state.throttle
    )
    return _render(issued)


def _form(content_type: str | None, body: bytes) -> dict[str, str] | TokenResponse:
    if wire.media_type(content_type) != "application/x-www-form-urlencoded":
        return invalid_request("The body must be application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=bool(body),
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        return invalid_request("The body is not a valid form")
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            return invalid_request("A parameter is repeated")
        form[name] = value
    return form


def _render(response: TokenResponse) -> Response:
    return JSONResponse(response.body, status_code=response.status, headers=response.headers)
