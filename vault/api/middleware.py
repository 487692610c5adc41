"""Request id, metrics and one log line per request, around everything else.

A plain ASGI middleware (not BaseHTTPMiddleware) so that streamed downloads pass through
untouched and are timed to their last byte.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

import structlog
from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from vault.api import errors
from vault.api.body_limit import BodyLimitMiddleware, is_fhir_path
from vault.api.hosts import AllowedHostMiddleware, allowed_hosts
from vault.observability import metrics
from vault.observability.logs import configure_logging, get_logger, logging_configured
from vault.services import Services
from vault.settings import Settings
from vault.web import uploads as web_upload

REQUEST_ID_HEADER = "X-Request-ID"
# What proxies and tracing systems put there (nginx's $request_id, UUIDs, trace ids);
# anything else -- too short, too long, odd characters -- is replaced, never echoed.
_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")

log = get_logger("vault.request")


def request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            if _WELL_FORMED.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The matched route's template (``/fhir/DocumentReference/{id}``), never the path
    itself, which carries identifiers."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else metrics.UNMATCHED_ROUTE


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        status = 500
        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started_response = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        started = time.perf_counter()
        metrics.HTTP_IN_PROGRESS.inc()
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as error:
                if started_response:
                    log.exception("response interrupted")
                    raise
                # Answered here rather than by the server-error middleware outside, so
                # that the client gets the request id it needs to report the failure.
                response = await errors.unexpected_error(Request(scope, receive), error)
                await response(scope, receive, send_with_id)
            finally:
                metrics.HTTP_IN_PROGRESS.dec()
                elapsed = time.perf_counter() - started
                route = route_template(scope)
                method = metrics.known_method(scope["method"])
                metrics.observe_request(method, route, status, elapsed)
                log.log(
                    _level(status),
                    "request",
                    method=method,
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 1),
                )


def _level(status: int) -> int:
    return logging.ERROR if status >= 500 else logging.INFO


def install(app: FastAPI, settings: Settings, services: Services) -> None:
    """Logging (unless the process configured it already), pool metrics, the middleware."""
    if not logging_configured():
        configure_logging(json_output=settings.log_json, level=settings.log_level)
    metrics.watch_pool(services.engine)
    # Added first, so they sit inside the observability middleware: refusals are logged
    # and counted like any other answer. The host is checked before the body is read.
    app.add_middleware(
        BodyLimitMiddleware,
        fhir_limit=settings.max_body_bytes,
        other_limit=min(settings.max_api_body_bytes, settings.max_body_bytes),
        carries_documents=lambda path: is_fhir_path(path) or web_upload.carries_documents(path),
    )
    app.add_middleware(
        AllowedHostMiddleware, base_url=settings.issuer, allowed=allowed_hosts(settings)
    )
    app.add_middleware(ObservabilityMiddleware)
    proxies = [entry.strip() for entry in settings.trusted_proxies.split(",") if entry.strip()]
    if proxies:
        # Outermost: the address the throttle counts and the audit log records, and the
        # scheme the token endpoint checks, are the client's only when a named proxy says
        # so; anyone else's forwarded headers are ignored (docs/operations.md).
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)
