"""ITI-68 Retrieve Document: the bytes with their own content type, streamed and decrypted
segment by segment; or a Binary resource when asked for FHIR JSON."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from itertools import chain

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from vault.api.deps import ActorDep, ServicesDep, SessionDep
from vault.api.responses import FhirResponse
from vault.fhir.wire import JSON_MEDIA_TYPES, media_type

router = APIRouter(prefix="/fhir", tags=["Binary"])


@router.get("/Binary/{binary_id}", summary="ITI-68 Retrieve Document")
def retrieve(
    binary_id: str, actor: ActorDep, found: ServicesDep, session: SessionDep, request: Request
) -> Response:
    content = found.documents.content(session, actor, binary_id)
    # Decrypt the first segment now: a record whose ciphertext or key does not match fails
    # with a clean error before any byte is sent.
    first = next(content.chunks)
    chunks: Iterator[bytes] = chain([first], content.chunks)
    wants = [media_type(part) for part in (request.headers.get("accept") or "").split(",")]
    if (
        any(kind in JSON_MEDIA_TYPES for kind in wants)
        and content.content_type not in JSON_MEDIA_TYPES
    ):
        data = b"".join(chunks)
        return FhirResponse(
            {
                "resourceType": "Binary",
                "id": binary_id,
                "contentType": content.content_type,
                "data": base64.b64encode(data).decode(),
            }
        )
    headers = {
        "Content-Length": str(content.size),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    return StreamingResponse(chunks, media_type=content.content_type, headers=headers)
