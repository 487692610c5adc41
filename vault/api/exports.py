"""Exports of a whole record (docs/lifecycle.md): ask, follow, download. Thin: parse, call
the export service, render."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from vault.access.permissions import Permission
from vault.api.deps import ActorDep, SessionDep, record_of
from vault.api.notifications import PatientId
from vault.http.deps import ServicesDep, requires
from vault.models import RecordExport
from vault.models.base import as_utc

router = APIRouter(prefix="/api", tags=["Exports"])

EXPORTS = "/patients/{patient_id}/exports"
ExportId = Annotated[str, Path(max_length=64)]


class ExportOut(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    id: str
    status: str = Field(description="queued, building, ready, failed or expired")
    progress: int = Field(description="Percentage of the record's content written so far")
    requested_at: str
    finished_at: str | None = None
    expires_at: str | None = Field(default=None, description="Downloadable until then")
    documents: int | None = None
    size: int | None = Field(default=None, description="The archive's size in bytes")
    archive: str | None = Field(default=None, description="Where to download it, once ready")

    @classmethod
    def of(cls, job: RecordExport, url: str) -> ExportOut:
        ready = job.status == "ready"
        return cls(
            id=job.id,
            status=job.status,
            progress=job.progress,
            requested_at=as_utc(job.requested_at).isoformat(),
            finished_at=as_utc(job.finished_at).isoformat() if job.finished_at else None,
            expires_at=as_utc(job.expires_at).isoformat() if job.expires_at else None,
            documents=job.documents if ready else None,
            size=job.archive_size if ready else None,
            archive=f"{url}/archive" if ready else None,
        )


def _job_url(services: ServicesDep, patient_id: str, export_id: str) -> str:
    return f"{services.settings.issuer}/api/patients/{patient_id}/exports/{export_id}"


@router.post(
    EXPORTS,
    status_code=202,
    summary="Ask for an export of the whole record; the job's URL is in Location",
    response_model=ExportOut,
    dependencies=[requires(Permission.RECORD_EXPORT)],
)
def request_export(
    patient_id: PatientId,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
    response: Response,
) -> ExportOut:
    record = record_of(actor, patient_id)
    job = services.exports.request(session, actor, record)
    url = _job_url(services, patient_id, job.id)
    response.headers["Location"] = url
    return ExportOut.of(job, url)


@router.get(
    EXPORTS + "/{export_id}",
    summary="An export's status and progress",
    response_model=ExportOut,
    dependencies=[requires(Permission.RECORD_EXPORT)],
)
def export_status(
    patient_id: PatientId,
    export_id: ExportId,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> ExportOut:
    job = services.exports.status(session, actor, record_of(actor, patient_id), export_id)
    return ExportOut.of(job, _job_url(services, patient_id, job.id))


@router.get(
    EXPORTS + "/{export_id}/archive",
    summary="Download the export (a zip), for the person who asked for it, until it expires",
    response_class=StreamingResponse,
    dependencies=[requires(Permission.RECORD_EXPORT)],
)
def export_archive(
    patient_id: PatientId,
    export_id: ExportId,
    actor: ActorDep,
    services: ServicesDep,
    session: SessionDep,
) -> StreamingResponse:
    download = services.exports.download(session, actor, record_of(actor, patient_id), export_id)
    return StreamingResponse(
        download.chunks,
        media_type="application/zip",
        headers={
            "Content-Length": str(download.size),
            "Content-Disposition": f'attachment; filename="{download.file_name}"',
            "Cache-Control": "no-store",
        },
    )
