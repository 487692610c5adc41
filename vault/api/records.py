"""A record's lifetime (docs/lifecycle.md): close it, ask for its deletion, reopen it, see
where it stands; and a person's opposition to the creation of their space. Thin: parse,
call the records services, render."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from vault.access.permissions import Permission
from vault.api.deps import ActorDep, SessionDep, record_of
from vault.api.notifications import PatientId
from vault.http.deps import ServicesDep, requires
from vault.records.service import Standing

router = APIRouter(prefix="/api", tags=["Record lifetime"])

CLOSURE = "/patients/{patient_id}/closure"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class StandingOut(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    status: str = Field(description="open, closed or deleted")
    closed_at: str | None = None
    retention_until: str | None = Field(
        default=None, description="Kept, encrypted, until then; then deleted"
    )
    deletion_requested_at: str | None = None
    deletion_due_at: str | None = Field(
        default=None, description="When the purge deletes it at the latest"
    )
    deleted_at: str | None = None
    reopened_at: str | None = None

    @classmethod
    def of(cls, standing: Standing) -> StandingOut:
        return cls(
            status=standing.status,
            closed_at=_iso(standing.closed_at),
            retention_until=_iso(standing.retention_until),
            deletion_requested_at=_iso(standing.deletion_requested_at),
            deletion_due_at=_iso(standing.deletion_due_at),
            deleted_at=_iso(standing.deleted_at),
            reopened_at=_iso(standing.reopened_at),
        )


class ClosureRequest(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid"
    )

    delete_now: bool = Field(
        default=False,
        description="Also ask for deletion before the retention period ends (within "
        "VAULT_EARLY_DELETION_DAYS)",
    )


@router.get(
    CLOSURE,
    summary="Where the record stands: open, closed or deleted",
    dependencies=[requires(Permission.RECORD_STATUS)],
)
def closure_status(
    patient_id: PatientId, actor: ActorDep, services: ServicesDep, session: SessionDep
) -> StandingOut:
    return StandingOut.of(services.records.status(session, actor, record_of(actor, patient_id)))


@router.post(
    CLOSURE,
    status_code=201,
    summary="Close the space: nobody reads it any more; kept, encrypted, then deleted",
    dependencies=[requires(Permission.RECORD_CLOSE, Permission.RECORD_DELETE)],
)
def close_record(
    patient_id: PatientId,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
    body: ClosureRequest | None = None,
) -> StandingOut:
    delete_now = body.delete_now if body is not None else False
    return StandingOut.of(
        services.records.close(session, actor, record_of(actor, patient_id), delete_now=delete_now)
    )


@router.post(
    CLOSURE + "/deletion",
    status_code=202,
    summary="Ask for the closed space's deletion before the retention period ends",
    dependencies=[requires(Permission.RECORD_DELETE)],
)
def request_deletion(
    patient_id: PatientId, actor: ActorDep, services: ServicesDep, session: SessionDep
) -> StandingOut:
    return StandingOut.of(
        services.records.request_deletion(session, actor, record_of(actor, patient_id))
    )


@router.post(
    "/patients/{patient_id}/reopening",
    summary="Reopen a closed (not deleted) space: its documents and policy come back",
    dependencies=[requires(Permission.RECORD_REOPEN)],
)
def reopen_record(
    patient_id: PatientId, actor: ActorDep, services: ServicesDep, session: SessionDep
) -> StandingOut:
    return StandingOut.of(services.records.reopen(session, actor, record_of(actor, patient_id)))


# -- oppositions ---------------------------------------------------------------------------


class OppositionOut(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    opposed_at: str


# What the opposition routes need instead of a permission: there is no record to decide on.
_OPPOSITION = (
    "the person's own opposition to a space being created, about no record: the person"
    " themselves only, by a patient token that may create their Patient"
)


@router.post(
    "/oppositions",
    summary="Oppose the creation of one's space (the person themselves, by patient token)",
    responses={200: {"description": "Already opposed"}, 201: {"description": "Opposed"}},
    status_code=201,
    dependencies=[requires(reason=_OPPOSITION)],
)
def oppose(
    actor: ActorDep, services: ServicesDep, session: SessionDep, response: Response
) -> OppositionOut:
    since, created = services.oppositions.oppose(session, actor)
    if not created:
        response.status_code = 200
    return OppositionOut(opposed_at=since.isoformat())


@router.get(
    "/oppositions/me",
    summary="One's opposition, if any (404 otherwise)",
    dependencies=[requires(reason=_OPPOSITION)],
)
def opposition_status(actor: ActorDep, services: ServicesDep, session: SessionDep) -> OppositionOut:
    return OppositionOut(opposed_at=services.oppositions.status(session, actor).isoformat())


@router.delete(
    "/oppositions/me",
    status_code=204,
    summary="Withdraw one's opposition",
    response_class=Response,
    dependencies=[requires(reason=_OPPOSITION)],
)
def withdraw_opposition(actor: ActorDep, services: ServicesDep, session: SessionDep) -> Response:
    services.oppositions.withdraw(session, actor)
    return Response(status_code=204)
