"""A person's opposition to the creation of their space (docs/lifecycle.md).

The person, signed in (a patient token: its subject is their INS), opposes; the vault keeps
only the keyed blind index of the INS that the patients table keys records by, and the
moment. From then on a push that would create their space is refused, saying why, and
nothing of it is stored (vault/patients/oppositions.py, where records are created). The
person may withdraw the opposition. Each step is in the audit log, on the chain that names
no patient, under the key policies name INS holders by (``ins:<index>``), never the INS.
"""

from __future__ import annotations

from datetime import datetime

from vault.access.policy import Actor, Purpose
from vault.access.records import AuditRecord, Outcome
from vault.access.service import AccessService, ins_index
from vault.db import Session
from vault.errors import Conflict, Forbidden, NotFound
from vault.identity.principal import Role
from vault.identity.scopes import Interaction, scopes_allow
from vault.models import Opposition
from vault.models.base import as_utc, utcnow
from vault.patients.oppositions import opposition
from vault.storage.keys.provider import KeyProvider

OPPOSE = "record:oppose"


class OppositionService:
    def __init__(self, access: AccessService, keys: KeyProvider) -> None:
        self.access = access
        self._keys = keys

    def _index(self, actor: Actor) -> bytes:
        """Only the person themselves, with a token that may create their Patient."""
        principal = actor.principal
        if principal.role is not Role.PATIENT:
            raise Forbidden("Only the person themselves may oppose the creation of their space")
        if not scopes_allow(principal.scopes, "Patient", Interaction.CREATE):
            raise Forbidden("The token's scopes do not allow this")
        return ins_index(self._keys, "ins", principal.subject)

    def _record(self, session: Session, actor: Actor, stage: str) -> None:
        self.access.record(
            session,
            AuditRecord(
                action="D" if stage == "withdrawn" else "C",
                outcome=Outcome.SUCCESS,
                purpose=Purpose.PATIENT_REQUEST.value,
                principal=actor.principal,
                resource_type="Patient",
                actor_patient_id=actor.own_patient_id,
                detail={"permission": OPPOSE, "stage": stage, "person": actor.proxy_key or ""},
            ),
        )

    def oppose(self, session: Session, actor: Actor) -> tuple[datetime, bool]:
        """The opposition's date, and whether it is new."""
        index = self._index(actor)
        if actor.own_patient_id is not None:
            raise Conflict(
                "You have a space: close it (and ask for its deletion) instead of opposing"
            )
        found = opposition(session, index)
        if found is not None:
            return as_utc(found.created_at), False
        now = utcnow()
        session.add(Opposition(ins_index=index, created_at=now))
        session.flush()
        self._record(session, actor, "opposed")
        return now, True

    def status(self, session: Session, actor: Actor) -> datetime:
        found = opposition(session, self._index(actor))
        if found is None:
            raise NotFound("No opposition")
        return as_utc(found.created_at)

    def withdraw(self, session: Session, actor: Actor) -> None:
        found = opposition(session, self._index(actor))
        if found is None:
            raise NotFound("No opposition")
        session.delete(found)
        session.flush()
        self._record(session, actor, "withdrawn")
