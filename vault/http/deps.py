"""The services, as a request dependency, and how a request's transaction ends."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from vault.access.records import AuditRecord
from vault.services import Services


async def services(request: Request) -> Services:
    # Async because it does no I/O: a sync dependency costs a trip to the thread pool.
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]


def commit(session: Session) -> None:
    try:
        session.commit()
    finally:
        session.close()


def roll_back_and_record(found: Services, session: Session, record: AuditRecord | None) -> None:
    try:
        session.rollback()
    finally:
        session.close()
    if record is not None:
        found.audit.append_standalone(found.session_factory, record)
