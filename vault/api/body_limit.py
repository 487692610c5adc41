"""Every request body is bounded before anything parses it.

Routes that carry documents (``/fhir`` and below, and the patient's space's upload form)
take up to ``VAULT_MAX_BODY_BYTES``; every other route (the JSON APIs under ``/api``, ``/oauth/token``, the web pages)
takes up to ``VAULT_MAX_API_BODY_BYTES``. With a declared ``Content-Length`` past the limit
not a byte is handed to the app; a chunked body is counted as it arrives, and the request is
cut off at the first chunk past the limit, so no route ever holds more than the limit plus
one chunk. The answer is ``413``: an OperationOutcome on the FHIR surface (the FHIR body
reader's own, which records the refusal in the audit log, when it is the one that noticed),
an RFC 9457 problem elsewhere. A route that never reads its body answers as usual.

A plain ASGI middleware, so that it sees the raw ``receive`` stream whatever the route does
with it (FastAPI's JSON and form parsing, a dependency's own streaming read).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vault.api.errors import outcome_response


def is_fhir_path(path: str) -> bool:
    return path == "/fhir" or path.startswith("/fhir/")


def too_large(path: str, limit: int) -> Response:
    message = f"Request body exceeds the limit of {limit} bytes"
    if is_fhir_path(path):
        return outcome_response(413, "too-costly", message)
    return JSONResponse(
        {"type": "about:blank", "title": "Content Too Large", "status": 413, "detail": message},
        status_code=413,
        media_type="application/problem+json",
    )


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        fhir_limit: int,
        other_limit: int,
        carries_documents: Callable[[str], bool] = is_fhir_path,
    ) -> None:
        self.app = app
        self.fhir_limit = fhir_limit
        self.other_limit = other_limit
        self.carries_documents = carries_documents

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = self.fhir_limit if self.carries_documents(path) else self.other_limit
        declared = Headers(scope=scope).get("content-length")
        # A declared length past the limit: not one byte of the body is handed over.
        cut = declared is not None and declared.isdigit() and int(declared) > limit
        received = 0
        exceeded = False
        started = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded, cut
            if cut:
                # The app wants more than the limit allows: to it, the client went away.
                # Whatever it makes of that (a 400, an exception), the answer is a 413.
                exceeded = True
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # The chunk that crosses the limit is handed over, never the rest: a
                    # reader that counts (the FHIR one) refuses it itself, and records the
                    # refusal in the audit log; any other reader gets the cut below.
                    cut = True
                    return {**message, "more_body": True}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the app's own answer to the cut-off body was replaced
            if message["type"] == "http.response.start":
                started = True
                # The app's own 413 (the FHIR reader's, audited) stands; anything else it
                # says about a body it was not given in full is replaced.
                if exceeded and message["status"] != 413:
                    replaced = True
                    await too_large(path, limit)(scope, receive, send)
                    return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if exceeded and not started:
                await too_large(path, limit)(scope, receive, send)
            elif not replaced:
                raise
