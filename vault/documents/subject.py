"""Resolving a reference to the patient, in every form FHIR allows: literal
(``Patient/{id}``, absolute on this server), contained (``#id``), in-bundle (``urn:uuid:``),
conditional (``Patient?identifier=system|value``) and logical (``identifier``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy.orm import Session

from vault.access.policy import Actor
from vault.errors import InvalidResource
from vault.patients.service import PatientService


class SubjectResolver:
    def __init__(self, patients: PatientService, base_url: str) -> None:
        self.patients = patients
        self._fhir_base = base_url.rstrip("/") + "/fhir/"

    def resolve(
        self,
        session: Session,
        actor: Actor,
        reference: Any,
        *,
        contained: list[Any],
        in_bundle: Mapping[str, str],
        expression: str,
    ) -> str:
        if not isinstance(reference, dict):
            raise InvalidResource("subject must be a Reference", expression=expression)
        literal = reference.get("reference")
        if isinstance(literal, str) and literal:
            return self._literal(session, actor, literal, contained, in_bundle, expression)
        identifier = reference.get("identifier")
        if isinstance(identifier, dict) and identifier.get("system") and identifier.get("value"):
            return self._by_identifier(
                session, str(identifier["system"]), str(identifier["value"]), expression
            )
        raise InvalidResource("subject must reference the patient", expression=expression)

    def _literal(
        self,
        session: Session,
        actor: Actor,
        literal: str,
        contained: list[Any],
        in_bundle: Mapping[str, str],
        expression: str,
    ) -> str:
        if literal.startswith("#"):
            for resource in contained:
                if (
                    isinstance(resource, dict)
                    and resource.get("resourceType") == "Patient"
                    and resource.get("id") == literal[1:]
                ):
                    patient, _ = self.patients.ensure(
                        session, actor, resource, expression=f"{expression}(contained)"
                    )
                    return patient.id
            raise InvalidResource("subject points to no contained Patient", expression=expression)
        if literal in in_bundle:
            return in_bundle[literal]
        if literal.startswith(("urn:uuid:", "urn:oid:")):
            raise InvalidResource(
                "subject points to no Patient in this Bundle", expression=expression
            )
        if literal.startswith("Patient?"):
            query = parse_qs(literal.removeprefix("Patient?"))
            values = query.get("identifier") or []
            if len(values) != 1 or len(query) != 1:
                raise InvalidResource(
                    "A conditional patient reference must be Patient?identifier=system|value",
                    expression=expression,
                )
            system, _, value = values[0].partition("|")
            return self._by_identifier(session, system, value, expression)
        relative = literal.removeprefix(self._fhir_base)
        kind, _, patient_id = relative.partition("/")
        if kind != "Patient" or not patient_id or "/" in patient_id.split("/_history")[0]:
            raise InvalidResource(
                "subject must reference a Patient on this server", expression=expression
            )
        found = self.patients.get(session, patient_id.split("/_history")[0])
        if found is None:
            raise InvalidResource(
                "subject names a patient that does not exist", expression=expression
            )
        return found.id

    def _by_identifier(self, session: Session, system: str, value: str, expression: str) -> str:
        patient = self.patients.find(session, system, value)
        if patient is None:
            # FHIR: a conditional reference with no match fails the whole request.
            raise InvalidResource(
                "No patient matches the subject's identifier", expression=expression
            )
        return patient.id
