"""What the pages about a record's lifetime need from the domain (docs/patients.md,
docs/lifecycle.md): close a space (asking, or not, for its early deletion), ask for its
deletion while it is kept, reopen it; for a person without a space, oppose its creation
and withdraw the opposition.

No HTTP framework here. Every step goes through the records services (vault/records),
which decide it with the access module and record it in the request's transaction, as
the API's routes do; this module only turns their refusals into French.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from vault.access import repository as access_repository
from vault.access.permissions import Permission
from vault.access.policy import Actor
from vault.access.state import EntryKind
from vault.db import Session
from vault.errors import Conflict, Forbidden, NotFound
from vault.identity.principal import Role
from vault.models.base import as_utc, utcnow
from vault.records import repository as records_repository
from vault.records.repository import CLOSED
from vault.records.service import Standing
from vault.services import Services
from vault.web.i18n import gettext
from vault.web.space import PageRefused

CLOSURE = "/dossiers/{pid}/fermeture"
OPPOSITION = "/bienvenue/opposition"


@dataclass(frozen=True)
class ClosedRecord:
    """A closed record the signed-in person represents, as their list of people shows it:
    by its closure's date (its Patient may not be read while it is closed)."""

    patient_id: str
    closed_at: datetime | None


@dataclass(frozen=True)
class Terms:
    """What closing today would mean, in the settings' terms, for the page to say before
    anything is done."""

    retention: str
    kept_until: datetime
    early_days: int
    deleted_by: datetime


def duration(days: int) -> str:
    """3650 days read "10 ans"; what is not a whole number of years stays in days."""
    years, rest = divmod(days, 365)
    if years and rest <= years * 3:
        # 3650 is ten years of 365 days; leap days make no difference a person would read.
        return gettext("lifetime.year") if years == 1 else gettext("lifetime.years", count=years)
    return gettext("lifetime.day") if days == 1 else gettext("lifetime.days", count=days)


class Lifetime:
    def __init__(self, services: Services) -> None:
        self.services = services

    def terms(self) -> Terms:
        settings = self.services.settings
        now = utcnow()
        kept_until = now + timedelta(days=settings.record_retention_days)
        early = now + timedelta(days=settings.early_deletion_days)
        return Terms(
            retention=duration(settings.record_retention_days),
            kept_until=kept_until,
            early_days=settings.early_deletion_days,
            deleted_by=min(kept_until, early),
        )

    # -- a record: where it stands, close, delete, reopen ------------------------------------

    def standing(self, session: Session, actor: Actor, patient_id: str) -> Standing:
        """Where the record stands (decided and recorded: ``record:status``)."""
        return self.services.records.status(session, actor, patient_id)

    def close(
        self, session: Session, actor: Actor, patient_id: str, *, delete_now: bool
    ) -> Standing:
        try:
            return self.services.records.close(session, actor, patient_id, delete_now=delete_now)
        except Conflict as error:
            raise PageRefused(gettext("error.closure.closed"), 409) from error

    def request_deletion(self, session: Session, actor: Actor, patient_id: str) -> Standing:
        try:
            return self.services.records.request_deletion(session, actor, patient_id)
        except Conflict as error:
            raise PageRefused(gettext("error.closure.open"), 409) from error

    def reopen(self, session: Session, actor: Actor, patient_id: str) -> Standing:
        try:
            return self.services.records.reopen(session, actor, patient_id)
        except Conflict as error:
            raise PageRefused(gettext("error.reopen.open"), 409) from error

    # -- oppositions --------------------------------------------------------------------

    def opposition(self, session: Session, actor: Actor) -> datetime | None:
        """When the signed-in person opposed the creation of their space, if they did."""
        try:
            return self.services.oppositions.status(session, actor)
        except NotFound:
            return None
        except Forbidden as error:
            raise PageRefused(gettext("error.opposition.forbidden"), 403) from error

    def oppose(self, session: Session, actor: Actor) -> None:
        try:
            self.services.oppositions.oppose(session, actor)
        except Conflict as error:
            raise PageRefused(gettext("error.opposition.has_space"), 409) from error
        except Forbidden as error:
            raise PageRefused(gettext("error.opposition.forbidden"), 403) from error

    def withdraw(self, session: Session, actor: Actor) -> None:
        try:
            self.services.oppositions.withdraw(session, actor)
        except NotFound as error:
            raise PageRefused(gettext("error.opposition.none"), 404) from error
        except Forbidden as error:
            raise PageRefused(gettext("error.opposition.forbidden"), 403) from error

    def closed_represented(self, session: Session, actor: Actor) -> list[ClosedRecord]:
        """The closed records whose holder the person represents: they leave the list of
        relationships (whose policy reads a closed record refuses), yet their
        representative may still reopen them or ask for their deletion."""
        if actor.proxy_key is None:
            return []
        rows = access_repository.entries_naming(
            session, actor.proxy_key, actor.proxy_issuer, (EntryKind.REPRESENTATIVE,), utcnow()
        )
        found = []
        for row in rows:
            state = records_repository.lifecycle(session, row.patient_id)
            if state is None or state.status != CLOSED:
                continue
            if self.services.access.check(actor, Permission.RECORD_STATUS, row.patient_id):
                closed_at = as_utc(state.closed_at) if state.closed_at else None
                found.append(ClosedRecord(row.patient_id, closed_at))
        return found

    # -- where a patient lands after signing in --------------------------------------------

    def landing(self, session: Session, actor: Actor) -> str | None:
        """A patient whose own space is closed lands on the page that says so; one who
        has no space and opposed its creation, on the page of their opposition; anyone
        else where they landed before (None)."""
        if actor.principal.role is not Role.PATIENT:
            return None
        own = actor.own_patient_id
        if own is not None:
            return CLOSURE.format(pid=own) if actor.own_record_closed else None
        return OPPOSITION if self.opposition(session, actor) is not None else None


def is_closed(standing: Standing) -> bool:
    return standing.status == CLOSED


def lifetime(services: Services) -> Lifetime:
    cached: Lifetime | None = getattr(services, "_web_lifetime", None)
    if cached is None:
        cached = Lifetime(services)
        services._web_lifetime = cached  # type: ignore[attr-defined]
    return cached
