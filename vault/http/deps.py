"""The services, as a request dependency, and the commit that ends a request's transaction
(a failed one is ended by ``AccessService.end_failed``, which records what must outlive it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

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
