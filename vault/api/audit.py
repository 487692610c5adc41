"""Checkpoints and proofs of the audit log's Merkle tree (docs/audit.md).

They reveal no health data and no identifier, only hashes and sizes: any authenticated
caller may fetch them, and fetching them is not itself logged (verifying the log must
not grow it). JSON, not FHIR: these follow RFC 9162 and C2SP, not a FHIR resource.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import JSONResponse, Response

from vault.api.deps import SessionDep
from vault.api.hosts import public_url
from vault.audit import merkle
from vault.audit.checkpoints import checkpoint_json
from vault.errors import BadRequest, NotFound
from vault.http.deps import ServicesDep, requires

router = APIRouter(prefix="/audit", tags=["Audit log integrity"])

# Sizes, indices and ids are 64-bit in the database; a larger number is refused as a bad
# request rather than sent there.
MAX_BIGINT = 2**63 - 1


def _existing_log(
    services: ServicesDep,
    session: SessionDep,
    log: Annotated[
        int, Query(ge=0, le=1023, description="The audit log, when the vault keeps several")
    ] = 0,
) -> int:
    """Which audit log's tree (docs/audit.md): log 0, the only one unless several were set
    up. A log the vault does not keep is not found: an empty answer would read as a log
    with nothing signed yet, and a verifier asking the wrong log would think it checked."""
    if log >= services.audit_log.tree.logs(session):
        raise NotFound("No such audit log")
    return log


LogQuery = Annotated[int, Depends(_existing_log)]


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


@router.get(
    "/public-key",
    summary="The key checkpoints are signed with (Ed25519)",
    dependencies=[
        requires(reason="the audit log's verification material: hashes and signatures only")
    ],
)
def public_key(services: ServicesDep) -> Response:
    verifier = services.audit_log.checkpoints.key.verifier_if_present()
    if verifier is None:
        raise NotFound("No checkpoint has been signed yet")
    return JSONResponse(
        {
            "algorithm": "Ed25519",
            "name": verifier.name,
            "keyId": verifier.key_id,
            "publicKey": _b64(verifier.public_key),
            "verifierKey": verifier.verifier_key,
        }
    )


@router.get(
    "/checkpoints",
    summary="Signed checkpoints, newest first",
    dependencies=[
        requires(reason="the audit log's verification material: hashes and signatures only")
    ],
)
def checkpoints(
    services: ServicesDep,
    session: SessionDep,
    log: LogQuery,
    request: Request,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_BIGINT, description="Only tree sizes below this")
    ] = None,
    count: Annotated[int, Query(alias="_count", ge=1, le=1000)] = 100,
) -> Response:
    rows = services.audit_log.checkpoints.page(session, before, count, log)
    document: dict[str, Any] = {"checkpoints": [checkpoint_json(row) for row in rows]}
    if len(rows) == count:
        document["next"] = public_url(
            services.settings, request, before=rows[-1].tree_size, _count=count
        )
    return JSONResponse(document)


@router.get(
    "/checkpoints/latest",
    summary="The newest signed checkpoint",
    dependencies=[
        requires(reason="the audit log's verification material: hashes and signatures only")
    ],
)
def latest_checkpoint(services: ServicesDep, session: SessionDep, log: LogQuery) -> Response:
    row = services.audit_log.checkpoints.latest(session, log)
    if row is None:
        raise NotFound("No checkpoint has been signed yet")
    return JSONResponse(checkpoint_json(row))


@router.get(
    "/checkpoints/{tree_size}",
    summary="The checkpoint signed at a tree size",
    dependencies=[
        requires(reason="the audit log's verification material: hashes and signatures only")
    ],
)
def checkpoint(
    tree_size: Annotated[int, Path(ge=0, le=MAX_BIGINT)],
    services: ServicesDep,
    session: SessionDep,
    log: LogQuery,
) -> Response:
    row = services.audit_log.checkpoints.get(session, tree_size, log)
    if row is None:
        raise NotFound("No checkpoint was signed at this tree size")
    return JSONResponse(checkpoint_json(row))


def _default_size(services: ServicesDep, session: SessionDep, given: int | None, log: int) -> int:
    if given is not None:
        return given
    row = services.audit_log.checkpoints.latest(session, log)
    if row is None:
        raise NotFound("No checkpoint has been signed yet")
    return row.tree_size


@router.get(
    "/proofs/inclusion",
    summary="RFC 9162 inclusion proof of an entry",
    dependencies=[
        requires(reason="the audit log's verification material: hashes and signatures only")
    ],
)
def inclusion(
    services: ServicesDep,
    session: SessionDep,
    log: LogQuery,
    leaf: Annotated[
        int | None, Query(ge=0, le=MAX_BIGINT, description="The entry's leaf index")
    ] = None,
    entry: Annotated[
        int | None, Query(ge=1, le=MAX_BIGINT, description="Or the entry's id")
    ] = None,
    tree_size: Annotated[
        int | None, Query(ge=1, le=MAX_BIGINT, description="Default: the latest checkpoint's")
    ] = None,
) -> Response:
    if (leaf is None) == (entry is None):
        raise BadRequest("Give exactly one of leaf and entry", expression="leaf")
    tree = services.audit_log.tree
    if entry is not None:
        # An entry is proven in its own log's tree.
        leaf = tree.leaf_index_of(session, entry)
        if leaf is None:
            raise NotFound("This entry is not in the tree yet (or does not exist)")
        log = tree.log_of(session, entry) or 0
    assert leaf is not None
    size = _default_size(services, session, tree_size, log)
    path = tree.inclusion_proof(session, leaf, size, log)
    row = tree.leaf_entry(session, leaf, log)
    if row is None:
        raise NotFound("No entry at this leaf")
    return JSONResponse(
        {
            "leafIndex": leaf,
            "treeSize": size,
            "entry": row.id,
            "entryHash": _b64(row.entry_hash),
            "leafHash": _b64(merkle.leaf_hash(row.entry_hash)),
            "auditPath": [_b64(node) for node in path],
        }
    )


@router.get(
    "/proofs/consistency",
    summary="RFC 9162 consistency proof between two tree sizes",
    dependencies=[
        requires(reason="the audit log's verification material: hashes and signatures only")
    ],
)
def consistency(
    services: ServicesDep,
    session: SessionDep,
    log: LogQuery,
    first: Annotated[int, Query(ge=1, le=MAX_BIGINT, description="The older tree size")],
    second: Annotated[
        int | None,
        Query(
            ge=1, le=MAX_BIGINT, description="The newer tree size; default: the latest checkpoint's"
        ),
    ] = None,
) -> Response:
    size = _default_size(services, session, second, log)
    path = services.audit_log.tree.consistency_proof(session, first, size, log)
    return JSONResponse(
        {"first": first, "second": size, "consistencyPath": [_b64(node) for node in path]}
    )
