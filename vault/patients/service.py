"""Patients. The INS sits only inside the encrypted Patient resource; lookups go through a
keyed blind index of it."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from vault.access.permissions import Permission
from vault.access.policy import Actor
from vault.access.service import AccessService, ins_index
from vault.db import Session
from vault.errors import BadRequest, InvalidResource
from vault.fhir.ins import check_ins
from vault.fhir.validate import validate_resource
from vault.identity.principal import INS_SYSTEMS, Role
from vault.models import Patient
from vault.models.base import new_id, utcnow
from vault.patients import repository
from vault.patients.oppositions import refuse_if_opposed
from vault.storage import crypto
from vault.storage.envelope import Envelope
from vault.storage.keys.provider import KeyProvider


@dataclass(frozen=True)
class Ins:
    system: str
    value: str


def patient_context(patient_id: str, version: int) -> bytes:
    return crypto.associated_data("Patient", patient_id, version)


def parse_identifier_query(query: str, *, expression: str) -> tuple[str, str]:
    """``system|value`` as FHIR token searches write it."""
    system, sep, value = query.partition("|")
    if not sep or not system or not value:
        raise BadRequest("identifier must be given as system|value", expression=expression)
    return system, value


class PatientService:
    def __init__(
        self, access: AccessService, envelope: Envelope, keys: KeyProvider, *, check_ins_key: bool
    ) -> None:
        self.access = access
        self.envelope = envelope
        self._keys = keys
        self._check_ins_key = check_ins_key

    def ins_of(self, resource: dict[str, Any], *, expression: str) -> Ins:
        for index, identifier in enumerate(resource.get("identifier") or []):
            if isinstance(identifier, dict) and identifier.get("system") in INS_SYSTEMS:
                value = str(identifier.get("value") or "")
                check_ins(
                    identifier["system"],
                    value,
                    check_key=self._check_ins_key,
                    expression=f"{expression}.identifier[{index}]",
                )
                return Ins(identifier["system"], value)
        raise InvalidResource(
            "A patient must carry an INS identifier (urn:oid:1.2.250.1.213.1.4.8)",
            expression=f"{expression}.identifier",
        )

    def find(self, session: Session, system: str, value: str) -> Patient | None:
        if system not in INS_SYSTEMS:
            return None
        return repository.by_ins_index(session, ins_index(self._keys, system, value))

    def id_by_query(self, session: Session, query: str, *, expression: str) -> str | None:
        """The record id an INS query names, if any, without loading the record: the same
        small query whether it names one or not (docs/threat-model.md, timing)."""
        system, value = parse_identifier_query(query, expression=expression)
        if system not in INS_SYSTEMS:
            return None
        return repository.id_by_ins_index(session, ins_index(self._keys, system, value))

    @staticmethod
    def exists(session: Session, patient_id: str) -> bool:
        """Whether a record has this id: nothing of it is returned (reading it is
        ``read``, through the decision)."""
        return repository.get(session, patient_id) is not None

    def ensure(
        self, session: Session, actor: Actor, resource: dict[str, Any], *, expression: str
    ) -> tuple[Patient, bool]:
        """Conditional create on the INS: the existing record, or a new one."""
        validate_resource(resource, expression=expression)
        ins = self.ins_of(resource, expression=expression)
        existing = self.find(session, ins.system, ins.value)
        if existing is not None:
            # Learning which record an INS opens is itself an access: open to professionals
            # (feeding a record is), a patient only for their own -- and refused exactly as
            # creating an absent one is, so no patient can probe for another's INS.
            self.access.authorize(
                session,
                actor,
                Permission.PATIENT_CREATE,
                existing.id,
                resource_type="Patient",
                resource_id=existing.id,
                detail={"existing": "true"},
                not_found_as="Patient",
            )
            return existing, False
        # A person who opposed the creation of their space: nothing of this is stored.
        refuse_if_opposed(session, actor, ins_index(self._keys, ins.system, ins.value))
        patient_id = new_id()
        if (
            actor.principal.role is Role.PATIENT
            and actor.own_patient_id is None
            and ins.value == actor.principal.subject
        ):
            # A patient opening their own record.
            actor = Actor(actor.principal, own_patient_id=patient_id)
        self.access.authorize(
            session,
            actor,
            Permission.PATIENT_CREATE,
            patient_id,
            resource_type="Patient",
            resource_id=patient_id,
            not_found_as="Patient",
        )
        stored = copy.deepcopy(resource)
        stored["id"] = patient_id
        now = utcnow()
        stored["meta"] = {"versionId": "1", "lastUpdated": now.isoformat()}
        stored.pop("contained", None)
        sealed = self.envelope.seal_json(
            session, patient_id, stored, patient_context(patient_id, 1)
        )
        patient = Patient(
            id=patient_id,
            ins_index=ins_index(self._keys, ins.system, ins.value),
            version=1,
            resource_ciphertext=sealed.ciphertext,
            resource_dek=sealed.wrapped_dek,
            kek_id=sealed.kek_id,
            created_at=now,
            updated_at=now,
        )
        repository.add(session, patient)
        return patient, True

    def read_back(self, session: Session, actor: Actor, patient_id: str) -> dict[str, Any] | None:
        """A record just created, back to its patient when their token may read it: a token
        that may only create gets None (the caller answers with an outcome alone) rather
        than a refusal undoing the creation."""
        owner = self.access.actor(session, actor.principal)
        if owner.own_patient_id != patient_id:
            return None
        if not self.access.check(owner, Permission.PATIENT_READ, patient_id).allowed:
            return None
        return self.read(session, owner, patient_id)

    def read(self, session: Session, actor: Actor, patient_id: str) -> dict[str, Any]:
        patient = repository.get(session, patient_id)
        if patient is None:
            # Refused as another's record is, at the same cost (docs/threat-model.md).
            raise self.access.refuse_unknown(
                session,
                actor,
                Permission.PATIENT_READ,
                resource_type="Patient",
                resource_id=patient_id,
                not_found_as="Patient",
            )
        self.access.authorize(
            session,
            actor,
            Permission.PATIENT_READ,
            patient.id,
            resource_type="Patient",
            resource_id=patient.id,
            not_found_as="Patient",
        )
        return self.envelope.open_json(
            session,
            patient.id,
            patient.resource_ciphertext,
            patient.resource_dek,
            patient.kek_id,
            patient_context(patient.id, patient.version),
        )
