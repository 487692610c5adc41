"""ITI-68 Retrieve Document: the bytes with their own content type, streamed and decrypted
segment by segment; or a Binary resource when asked for FHIR JSON, streamed as well."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from itertools import chain

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from vault.access.permissions import Permission
from vault.api.deps import PrincipalDep, SessionDep, end_reads
from vault.db import Session
from vault.fhir.wire import FHIR_JSON, JSON_MEDIA_TYPES, media_type
from vault.http.deps import ServicesDep, requires
from vault.identity.principal import Principal
from vault.services import Services

router = APIRouter(prefix="/fhir", tags=["Binary"])

# Documents up to this size go out in one body; larger ones stream, never whole in memory.
WHOLE_BODY = 1024 * 1024
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# A document is whatever its sender declared (text/html, image/svg+xml ...): opened in a
# browser it must not run script against the vault's origin.
SANDBOXED = {
    **NO_STORE,
    "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:",
}


@router.get(
    "/Binary/{binary_id}",
    summary="ITI-68 Retrieve Document",
    dependencies=[requires(Permission.DOCUMENT_CONTENT)],
)
def retrieve(
    binary_id: str,
    principal: PrincipalDep,
    services: ServicesDep,
    session: SessionDep,
    request: Request,
) -> Response:
    # The hot shape of this read (a bearer token, no query) is answered before routing, by
    # vault.api.fhir.fast_binary, through the same ``binary_response``.
    return binary_response(services, principal, binary_id, request.headers.get("accept"), session)


def binary_response(
    services: Services,
    principal: Principal,
    binary_id: str,
    accept: str | None,
    session: Session,
) -> Response:
    # The actor, the read and the end of its transaction in this one thread: one hop to the
    # thread pool per download (docs/performance.md).
    actor = services.access.actor(session, principal)
    content = services.documents.content(session, actor, binary_id)
    # Its entry is committed: what is left (decrypting; a large document's later chunks,
    # each in a short transaction of its own) needs the request's transaction no more.
    end_reads(session)
    as_fhir = _wants_fhir(accept) and (media_type(content.content_type) not in JSON_MEDIA_TYPES)
    # The stored content type goes out as it came in: passed as media_type, Starlette would
    # add a charset to text/* types that the sender never declared.
    headers = {
        "Content-Type": content.content_type,
        "Content-Length": str(content.size),
        **SANDBOXED,
    }
    if content.size <= WHOLE_BODY and not as_fhir:
        return _whole(content.chunks, headers)
    # Decrypt the first segment now: a record whose ciphertext or key does not match fails
    # with a clean error before any byte is sent.
    first = next(content.chunks)
    chunks: Iterator[bytes] = chain([first], content.chunks)
    if as_fhir:
        return StreamingResponse(
            binary_resource(binary_id, content.content_type, chunks),
            media_type=FHIR_JSON,
            headers=NO_STORE,
        )
    return StreamingResponse(chunks, headers=headers)


def _whole(chunks: Iterator[bytes], headers: dict[str, str]) -> Response:
    """A small document decrypted whole here, in the endpoint's thread: streamed, it would
    cost a hop to the thread pool per segment and a task watching for the client to go.
    Failing at the first segment is a clean error; failing later goes out as a stream would
    have: the headers, the authentic segments, then the response cut short."""
    segments: list[bytes] = []
    try:
        for segment in chunks:
            segments.append(segment)
    except Exception as error:
        if not segments:
            raise
        return StreamingResponse(_cut_short(segments, error), headers=headers)
    return Response(b"".join(segments), headers=headers)


def _cut_short(segments: list[bytes], error: Exception) -> Iterator[bytes]:
    yield from segments
    raise error


def _wants_fhir(accept: str | None) -> bool:
    return any(media_type(part) in JSON_MEDIA_TYPES for part in (accept or "").split(","))


def binary_resource(binary_id: str, content_type: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A FHIR Binary whose ``data`` is base64-encoded on the fly, three bytes at a time, so
    that the document is never whole in memory, in clear or in base64."""
    head = json.dumps(
        {"resourceType": "Binary", "id": binary_id, "contentType": content_type},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    yield head[:-1].encode() + b',"data":"'
    pending = b""
    for chunk in chunks:
        data = pending + chunk if pending else chunk
        whole = len(data) - len(data) % 3
        yield base64.b64encode(data[:whole])
        pending = data[whole:]
    yield base64.b64encode(pending) + b'"}'
