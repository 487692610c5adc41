"""The OpenAPI document, made to say what the vault really answers.

FastAPI describes the FHIR routes as plain JSON with a pydantic 422, because they return
their own responses and read their own bodies. Clients (and schema-driven fuzzers) need the
truth: FHIR JSON in and out, and every error an ``OperationOutcome`` with its status. The
routers stay thin; this one pass over the generated document fills in what they share.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts

from vault.api.fhir.audit_events import SEARCH_PARAMETERS as AUDIT_EVENT_PARAMETERS
from vault.api.fhir.consent import SEARCH_PARAMETERS as CONSENT_PARAMETERS
from vault.api.fhir.documents import SEARCH_PARAMETERS as DOCUMENT_PARAMETERS
from vault.api.notifications import PUBLIC_PATHS as HTML_PAGES
from vault.fhir.wire import FHIR_JSON
from vault.http.deps import declared

OUTCOME = "#/components/schemas/OperationOutcome"
RESOURCE = "#/components/schemas/FhirResource"

SCHEMAS: dict[str, Any] = {
    "OperationOutcome": {
        "type": "object",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
            "issue": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["severity", "code"],
                    "properties": {
                        "severity": {
                            "type": "string",
                            "enum": ["fatal", "error", "warning", "information"],
                        },
                        "code": {"type": "string"},
                        "diagnostics": {"type": "string"},
                        "expression": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
    "FhirResource": {
        "type": "object",
        "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string"}},
    },
}

ERRORS = {
    400: "The request is malformed (parameters, JSON, FHIR wire rules)",
    401: "No valid access token",
    403: "The caller may see the resource but not do this to it",
    404: "Absent, or not visible to the caller (the two are indistinguishable)",
    409: "Conflicts with the current state or a concurrent change",
    410: "Withdrawn",
    412: "If-Match or If-None-Exist does not hold",
    413: "The body exceeds VAULT_MAX_BODY_BYTES on /fhir (also once decompressed), VAULT_MAX_API_BODY_BYTES elsewhere",
    415: "Unsupported Content-Type or Content-Encoding",
    422: "Valid JSON but not an acceptable resource (FHIR, IHE MHD or ANS PDSm rules)",
    429: "Too many failed authentications; see Retry-After",
    503: "The database or another backend is unavailable; see Retry-After",
}
READ_ERRORS = (400, 401, 403, 404, 410, 429, 503)
WRITE_ERRORS = (*READ_ERRORS, 409, 412, 422)
BODY_ERRORS = (413, 415)

# Routes that read a FHIR resource from the body themselves (FastAPI cannot see it).
FHIR_BODIES = {
    ("post", "/fhir"): "A transaction Bundle (ITI-65 Provide Document Bundle)",
    ("post", "/fhir/DocumentReference"): "A DocumentReference with its content inline",
    ("post", "/fhir/Patient"): "A Patient with an INS identifier",
    ("patch", "/fhir/DocumentReference/{document_id}"): "A FHIRPath Patch (Parameters)",
}
SEARCHES = {
    "/fhir/DocumentReference": DOCUMENT_PARAMETERS,
    "/fhir/AuditEvent": AUDIT_EVENT_PARAMETERS,
    "/fhir/Consent": CONSENT_PARAMETERS,
}
# Public routes answer in their own formats (OAuth 2 JSON, Prometheus text, ...).
OWN_FORMATS = frozenset(
    {"/.well-known/jwks.json", "/.well-known/smart-configuration", "/oauth/token"}
)
PLAIN = frozenset({"/healthz", "/readyz", "/metrics", "/"})


def install(app: FastAPI, public_paths: frozenset[str]) -> None:
    generate = app.openapi

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            # FastAPI's own document (which it caches), described once.
            document = generate()
            describe(document, public_paths)
            _requirements(app, document)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def describe(document: dict[str, Any], public_paths: frozenset[str]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    # Request validation errors are answered 400 with an OperationOutcome, not FastAPI's 422.
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(SCHEMAS)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if path in PLAIN:
                continue
            _describe_operation(path, method, operation, protected=path not in public_paths)


def _requirements(app: FastAPI, document: dict[str, Any]) -> None:
    """Each operation says what it requires, as its route declares it (``Requires`` in
    vault/http/deps.py): in its description, and as ``x-vault-permissions``."""
    paths = document.get("paths", {})
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or context.path not in paths:
            continue
        requirement = declared(route.dependencies)
        if requirement is None:
            continue
        for method in context.methods or ():
            operation = paths[context.path].get(method.lower())
            if operation is None:
                continue
            text = requirement.describe()
            if text:
                described = operation.get("description", "")
                operation["description"] = f"{described}\n\n{text}".strip()
            operation["x-vault-permissions"] = [p.value for p in requirement.permissions]


def _describe_operation(
    path: str, method: str, operation: dict[str, Any], *, protected: bool
) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("422", None)
    fhir = path.startswith("/fhir")
    if fhir:
        for status, response in responses.items():
            if status.startswith("2") and "content" in response:
                response["content"] = _success_content(path)
    if (method, path) in FHIR_BODIES:
        operation["requestBody"] = _fhir_body(method, FHIR_BODIES[(method, path)])
    if path in SEARCHES and method == "get":
        operation["parameters"] = [
            *operation.get("parameters", []),
            *(_query(name) for name in sorted(SEARCHES[path])),
        ]
    if path in OWN_FORMATS:
        _own_format_errors(path, responses)
        return
    codes = WRITE_ERRORS if method in ("post", "put", "patch", "delete") else READ_ERRORS
    if method in ("post", "put", "patch"):
        codes = (*codes, *BODY_ERRORS)
    for code in sorted(codes):
        if code == 401 and not protected:
            continue
        responses[str(code)] = _outcome(ERRORS[code])
    if path in HTML_PAGES:
        # The links in e-mails answer pages, a refused link included.
        responses["404"] = {
            "description": "A link that is unknown, already used or expired",
            "content": {"text/html": {"schema": {"type": "string"}}},
        }


def _success_content(path: str) -> dict[str, Any]:
    if path.startswith("/fhir/Binary/"):
        # The document's own bytes, or a Binary resource when FHIR JSON is asked for.
        return {
            "*/*": {"schema": {"type": "string", "format": "binary"}},
            FHIR_JSON: {"schema": {"$ref": RESOURCE}},
        }
    return {FHIR_JSON: {"schema": {"$ref": RESOURCE}}}


def _fhir_body(method: str, description: str) -> dict[str, Any]:
    content: dict[str, Any] = {FHIR_JSON: {"schema": {"$ref": RESOURCE}}}
    if method == "patch":
        content["application/json-patch+json"] = {
            "schema": {"type": "array", "items": {"type": "object"}}
        }
    return {"required": True, "description": description, "content": content}


def _query(name: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}


def _outcome(description: str) -> dict[str, Any]:
    return {"description": description, "content": {FHIR_JSON: {"schema": {"$ref": OUTCOME}}}}


def _own_format_errors(path: str, responses: dict[str, Any]) -> None:
    responses["404"] = _outcome("This endpoint is turned off")
    responses["429"] = _outcome(ERRORS[429])
    if path == "/oauth/token":
        oauth_error = {
            "description": "An RFC 6749 error (invalid_request, invalid_client, ...)",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["error"],
                        "properties": {
                            "error": {"type": "string"},
                            "error_description": {"type": "string"},
                        },
                    }
                }
            },
        }
        responses["400"] = oauth_error
        responses["401"] = oauth_error
        responses["413"] = _outcome(ERRORS[413])
        responses["415"] = _outcome(ERRORS[415])
        responses["503"] = _outcome(ERRORS[503])
