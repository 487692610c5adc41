"""The vault answers only for its own names, and every absolute URL it emits starts with
``VAULT_BASE_URL``.

A request's ``Host`` header is the client's to choose: links built from it (a redirect's
``Location``, a search's ``next`` link) would send the next request wherever the sender of
the first one wanted, and a DNS-rebinding page could talk to the vault under its own name.
So a request whose ``Host`` is not the base URL's host, a loopback name (the vault's own
probes and command line), or a name in ``VAULT_ALLOWED_HOSTS`` is refused with ``400``; and
a redirect the framework builds from the request (a trailing slash) is rewritten to the base
URL.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vault.api.errors import outcome_response
from vault.settings import Settings

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def allowed_hosts(settings: Settings) -> frozenset[str]:
    names = {name.strip().lower() for name in settings.allowed_hosts.split(",") if name.strip()}
    own = urlsplit(settings.base_url).hostname
    if own:
        names.add(own.lower())
    return frozenset(names | LOOPBACK_NAMES)


def public_url(settings: Settings, request: Request, **replace: str | int) -> str:
    """The request's own URL (path and query, with ``replace`` applied) on the base URL."""
    url = request.url.include_query_params(**replace) if replace else request.url
    return settings.issuer + url.path + (f"?{url.query}" if url.query else "")


def _hostname(host: str) -> str | None:
    try:
        name = urlsplit(f"//{host}").hostname
        # The port must parse too: "example.org:evil" is no host of ours.
        urlsplit(f"//{host}").port  # noqa: B018
    except ValueError:
        return None
    return name


class AllowedHostMiddleware:
    def __init__(self, app: ASGIApp, *, base_url: str, allowed: Iterable[str]) -> None:
        self.app = app
        self.base = base_url.rstrip("/")
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host", "")
        name = _hostname(host)
        if "*" not in self.allowed and name not in self.allowed:
            await _refused(scope["path"])(scope, receive, send)
            return

        async def public_redirects(message: Message) -> None:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                headers = MutableHeaders(scope=message)
                location = headers.get("location")
                if location:
                    headers["location"] = self._public(location, host)
            await send(message)

        await self.app(scope, receive, public_redirects)

    def _public(self, location: str, host: str) -> str:
        """A redirect built from the request's own Host goes to the base URL instead; one
        to another site (an identity provider) is left alone."""
        parts = urlsplit(location)
        if not parts.netloc or parts.netloc.lower() != host.lower():
            return location
        return self.base + parts.path + (f"?{parts.query}" if parts.query else "")


def _refused(path: str) -> Response:
    message = "This host is not served here: use the vault's configured address"
    if path == "/fhir" or path.startswith("/fhir/"):
        return outcome_response(400, "invalid", message)
    return JSONResponse(
        {"type": "about:blank", "title": "Bad Request", "status": 400, "detail": message},
        status_code=400,
        media_type="application/problem+json",
    )
