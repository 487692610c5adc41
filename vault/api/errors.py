"""One place turns every failure into an OperationOutcome: no stack trace, no PHI."""

from __future__ import annotations

import logging
import traceback

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from vault.api.responses import FhirResponse
from vault.db import DataError, DBAPIError, IntegrityError, OperationalError
from vault.errors import MissingToken, TooManyRequests, Unauthenticated, VaultError
from vault.fhir.outcome import operation_outcome

log = logging.getLogger("vault.api")

HTTP_ISSUE = {
    404: "not-found",
    405: "not-supported",
    401: "login",
    403: "forbidden",
    413: "too-costly",
    415: "not-supported",
}


def outcome_response(
    status: int,
    code: str,
    message: str,
    expression: str | None = None,
    headers: dict[str, str] | None = None,
) -> FhirResponse:
    return FhirResponse(
        operation_outcome(code, message, expression=expression), status_code=status, headers=headers
    )


async def vault_error(_request: Request, error: Exception) -> FhirResponse:
    assert isinstance(error, VaultError)
    headers = None
    if isinstance(error, MissingToken):
        headers = {"WWW-Authenticate": 'Bearer realm="vault"'}
    elif isinstance(error, Unauthenticated):
        headers = {
            "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{error.message}"'
        }
    if isinstance(error, TooManyRequests):
        headers = {"Retry-After": str(error.retry_after)}
    if error.status_code >= 500:
        log.error("request failed: %s", type(error).__name__)
    return outcome_response(
        error.status_code, error.issue_code, error.message, error.expression, headers
    )


async def validation_error(_request: Request, error: Exception) -> FhirResponse:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0] if error.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return outcome_response(
        400, "invalid", f"Invalid request: {first.get('msg', 'bad input')}", where or None
    )


async def http_error(_request: Request, error: Exception) -> FhirResponse:
    assert isinstance(error, StarletteHTTPException)
    code = HTTP_ISSUE.get(error.status_code, "processing")
    return outcome_response(
        error.status_code, code, str(error.detail), headers=dict(error.headers or {})
    )


async def database_error(_request: Request, error: Exception) -> FhirResponse:
    if isinstance(error, IntegrityError):
        # A concurrent submission won the race for the same unique value.
        return outcome_response(
            409, "conflict", "The request conflicts with a concurrent change; retry it"
        )
    if isinstance(error, DataError):
        # The database refused a value the request carried (a NUL character, a number past
        # a column's range): the request's fault, and the transaction is rolled back.
        return outcome_response(
            400, "invalid", "The request holds a value that cannot be stored or searched for"
        )
    if isinstance(error, OperationalError) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    ):
        log.warning(
            "database unavailable: %s",
            type(error.orig).__name__ if isinstance(error, DBAPIError) else type(error).__name__,
        )
        return outcome_response(
            503,
            "transient",
            "The database is unavailable; retry later",
            headers={"Retry-After": "5"},
        )
    log.error("database error: %s", type(error).__name__)
    return outcome_response(500, "exception", "Internal error")


async def unexpected_error(_request: Request, error: Exception) -> FhirResponse:
    # Frames only: an exception's message or locals may hold health data.
    frames = "; ".join(
        f"{frame.filename}:{frame.lineno} {frame.name}"
        for frame in traceback.extract_tb(error.__traceback__)
    )
    log.error("unexpected error: %s at %s", type(error).__name__, frames)
    return outcome_response(500, "exception", "Internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(VaultError, vault_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(Exception, unexpected_error)
