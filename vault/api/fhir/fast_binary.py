"""``GET /fhir/Binary/{id}``, the busiest request, answered before FastAPI routes it.

Downloads are what patients, caregivers and professionals do most, and a download's own
work (one decision, one audit entry, one chunk) costs less than what FastAPI spends around
it: matching the routes, solving the route's dependencies, its exception-handling layers
(docs/performance.md). For the shape nearly every download has -- ``GET``, a bearer token, no
query -- this middleware, inside the observability, host and body-limit middlewares, does
what the route's dependencies do, with the same functions: ``principal_of_token`` (the
token, the throttles), then, in one trip to the thread pool, ``in_unit_of_work`` (the
commit, the refusals counted, a failure recorded) around ``binary_response``, the route's
own body. Errors are answered by the same handlers. Any other shape (no token, a query,
``HEAD``) goes on to the route, which answers it exactly as before.
"""

from __future__ import annotations

import re
from functools import partial

from fastapi.concurrency import run_in_threadpool
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from vault.api import errors
from vault.api.deps import in_unit_of_work, principal_of_token
from vault.api.fhir import binary
from vault.api.fhir.binary import binary_response
from vault.db import DBAPIError
from vault.errors import VaultError
from vault.identity.throttle import Throttle
from vault.services import Services

# Starlette's default path convertor: one segment.
_BINARY = re.compile(r"/fhir/Binary/([^/]+)")
# The route this answers for: the request's logs and metrics name it, as for a routed one.
(ROUTE,) = binary.router.routes


class FastBinaryRead:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = _binary_read(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        binary_id, token = found
        starlette_app = scope["app"]
        services: Services = starlette_app.state.services
        throttle: Throttle = starlette_app.state.throttle
        scope["route"] = ROUTE
        client = scope.get("client")
        try:
            principal = principal_of_token(services, throttle, token, client[0] if client else None)
            response = await run_in_threadpool(
                in_unit_of_work,
                services,
                throttle,
                principal,
                "GET",
                partial(binary_response, services, principal, binary_id, _header(scope, b"accept")),
            )
        except VaultError as error:
            response = await errors.vault_error(Request(scope, receive), error)
        except DBAPIError as error:
            response = await errors.database_error(Request(scope, receive), error)
        await response(scope, receive, send)


def _binary_read(scope: Scope) -> tuple[str, str] | None:
    """The binary's id and the bearer token of a download of the usual shape, else None."""
    if (
        scope["type"] != "http"
        or scope["method"] != "GET"
        or scope.get("query_string")
        or scope.get("root_path")
    ):
        return None
    matched = _BINARY.fullmatch(scope["path"])
    if matched is None:
        return None
    authorization = _header(scope, b"authorization")
    scheme, token = get_authorization_scheme_param(authorization)
    if scheme.lower() != "bearer" or not token:
        return None
    return matched.group(1), token


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return ""
