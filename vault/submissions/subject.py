"""Resolving a reference to the patient, in every form FHIR allows:

- literal: ``Patient/{id}``, or absolute on this server (``{base}/fhir/Patient/{id}``),
  optionally version-specific;
- contained: ``#id``, a contained Patient carrying an INS: its record, created if new;
- in-bundle: a ``urn:uuid:`` (or any ``fullUrl``) of the transaction's Patient entry;
- conditional: ``Patient?identifier=system|value``, resolved as FHIR transactions require
  (exactly one match, or the request fails);
- logical: ``identifier`` with an INS, no ``reference``.

When a reference carries both a literal reference and an INS identifier, both must name the
same patient: a mismatch means the sender has mixed up two people.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from vault.access.policy import Actor
from vault.db import Session
from vault.errors import InvalidResource
from vault.fhir.ins import check_ins
from vault.fhir.references import local
from vault.identity.principal import INS_SYSTEMS
from vault.patients.service import PatientService

# The in-bundle step: the patient id a reference names inside the transaction, or None
# when it names no entry of it.
InBundle = Callable[[str], str | None]


class UnknownSubject(InvalidResource):
    """The reference is well formed but names no patient of this vault."""


def _no_bundle(_reference: str) -> str | None:
    return None


class SubjectResolver:
    def __init__(self, patients: PatientService, base_url: str, *, check_ins_key: bool) -> None:
        self.patients = patients
        self.fhir_base = base_url.rstrip("/") + "/fhir/"
        self._check_ins_key = check_ins_key
        self._keys = patients.envelope.keys

    def resolve(
        self,
        session: Session,
        actor: Actor,
        reference: Any,
        *,
        contained: list[Any],
        expression: str,
        in_bundle: InBundle = _no_bundle,
    ) -> str:
        if not isinstance(reference, dict):
            raise InvalidResource("subject must be a Reference", expression=expression)
        kind = reference.get("type")
        # Reference.type is a uri: "Patient", or the absolute URL of its definition.
        if kind is not None and (not isinstance(kind, str) or kind.rsplit("/", 1)[-1] != "Patient"):
            raise InvalidResource("subject must reference a Patient", expression=expression)
        literal = reference.get("reference")
        identifier = reference.get("identifier")
        if isinstance(literal, str) and literal:
            patient_id = self._literal(session, actor, literal, contained, in_bundle, expression)
            if isinstance(identifier, dict) and identifier.get("system") in INS_SYSTEMS:
                self._same_patient(session, patient_id, identifier, expression)
            return patient_id
        if isinstance(identifier, dict):
            return self._by_identifier(
                session, identifier.get("system"), identifier.get("value"), expression
            )
        raise InvalidResource(
            "subject must reference the patient (reference or identifier)", expression=expression
        )

    def _literal(
        self,
        session: Session,
        actor: Actor,
        literal: str,
        contained: list[Any],
        in_bundle: InBundle,
        expression: str,
    ) -> str:
        if literal.startswith("#"):
            return self._contained(session, actor, literal[1:], contained, expression)
        found = in_bundle(literal)
        if found is not None:
            return found
        if literal.startswith(("urn:uuid:", "urn:oid:")):
            raise InvalidResource(
                "subject points to no Patient entry of this Bundle", expression=expression
            )
        if literal.startswith("Patient?"):
            return self._conditional(session, literal.removeprefix("Patient?"), expression)
        parts = local(literal, self.fhir_base)
        if parts is None or parts[0] != "Patient":
            raise InvalidResource(
                "subject must reference a Patient on this server", expression=expression
            )
        return self._existing(session, parts[1], expression)

    def _existing(self, session: Session, patient_id: str, expression: str) -> str:
        # Patients are never deleted: one seen in this transaction still exists. One with
        # a key exists too, and the key is what the document is sealed under next, so one
        # query (or none, when the key is cached) answers both.
        seen = _seen_patients(session)
        if patient_id in seen or self._keys.find_active_kek(session, patient_id) is not None:
            return patient_id
        if not self.patients.exists(session, patient_id):
            raise UnknownSubject(
                "subject names a patient that does not exist", expression=expression
            )
        seen.add(patient_id)
        return patient_id

    def _contained(
        self, session: Session, actor: Actor, local_id: str, contained: list[Any], expression: str
    ) -> str:
        for resource in contained:
            if (
                isinstance(resource, dict)
                and resource.get("resourceType") == "Patient"
                and resource.get("id") == local_id
            ):
                patient, _ = self.patients.ensure(
                    session, actor, resource, expression=f"{expression}(contained)"
                )
                return patient.id
        raise InvalidResource("subject points to no contained Patient", expression=expression)

    def _conditional(self, session: Session, query: str, expression: str) -> str:
        criteria = parse_qs(query, keep_blank_values=True)
        values = criteria.get("identifier") or []
        if set(criteria) != {"identifier"} or len(values) != 1 or "|" not in values[0]:
            raise InvalidResource(
                "A conditional patient reference must be Patient?identifier=system|value",
                expression=expression,
            )
        system, _, value = values[0].partition("|")
        return self._by_identifier(session, system, value, expression)

    def _by_identifier(self, session: Session, system: Any, value: Any, expression: str) -> str:
        if system not in INS_SYSTEMS or not isinstance(value, str):
            raise InvalidResource(
                "Patients are identified by their INS (urn:oid:1.2.250.1.213.1.4.8)",
                expression=expression,
            )
        check_ins(system, value, check_key=self._check_ins_key, expression=expression)
        patient = self.patients.find(session, system, value)
        if patient is None:
            # FHIR: a conditional reference that matches nothing fails the whole request.
            raise UnknownSubject(
                "No patient matches the subject's identifier", expression=expression
            )
        return patient.id

    def _same_patient(
        self, session: Session, patient_id: str, identifier: dict[str, Any], expression: str
    ) -> None:
        """The reference names a record that exists, so an INS that opens no record names
        someone else just as another patient's INS does: both get the same refusal, or the
        answer would tell a patient whether that INS has a record here."""
        # Called only when the identifier's system is an INS one.
        system, value = str(identifier.get("system")), identifier.get("value")
        if not isinstance(value, str):
            raise InvalidResource(
                "Patients are identified by their INS (urn:oid:1.2.250.1.213.1.4.8)",
                expression=expression,
            )
        check_ins(system, value, check_key=self._check_ins_key, expression=expression)
        found = self.patients.find(session, system, value)
        if found is None or found.id != patient_id:
            raise InvalidResource(
                "subject.reference and subject.identifier name different patients",
                expression=expression,
            )

    def same_person(
        self, session: Session, patient_id: str, resource: dict[str, Any], expression: str
    ) -> None:
        """A contained Patient that describes the subject (``sourcePatientInfo``) must not
        carry another person's INS."""
        for identifier in resource.get("identifier") or []:
            if not isinstance(identifier, dict) or identifier.get("system") not in INS_SYSTEMS:
                continue
            value = identifier.get("value")
            found = self.patients.find(session, identifier["system"], str(value or ""))
            if found is None or found.id != patient_id:
                raise InvalidResource(
                    "sourcePatientInfo carries an INS that is not the subject's",
                    expression=expression,
                )


_SEEN_PATIENTS = "vault.seen_patients"


def _seen_patients(session: Session) -> set[str]:
    """Patients found in the session's current transaction (or savepoint, which may roll
    back a patient it created)."""
    transaction = session.get_nested_transaction() or session.get_transaction()
    held = session.info.get(_SEEN_PATIENTS)
    if held is None or held[0] is not transaction:
        held = (transaction, set())
        session.info[_SEEN_PATIENTS] = held
    seen: set[str] = held[1]
    return seen
