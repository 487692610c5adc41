"""Builders for the access policy tests: documents of a given type, category and labels,
and the policy API calls, made over HTTP as a patient's app or a professional's software
would make them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from tests.factories import CLASS_SYSTEM, Tokens, document_reference, ins, patient_resource
from vault.identity.principal import IDNPS_SYSTEM
from vault.models import AuditEntry
from vault.services import Services

MASKED = "MASQUE_PS"
VISIBILITY = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatusVisibiliteDocument/FHIR/"
    "TRE-A07-StatusVisibiliteDocument"
)


def professional(idnps: str) -> dict[str, str]:
    return {"system": IDNPS_SYSTEM, "value": idnps}


def publish_document(
    client: Any,
    headers: dict[str, str],
    patient_id: str,
    *,
    type_code: str = "11502-2",
    category: str = "10",
    labels: tuple[str, ...] = (),
    content: bytes = b"%PDF-1.7 compte rendu",
) -> tuple[str, str]:
    """ITI-105 publish; returns (DocumentReference id, Binary id)."""
    resource = document_reference(
        {"reference": f"Patient/{patient_id}"}, content, type_code=type_code
    )
    resource["category"] = [{"coding": [{"system": CLASS_SYSTEM, "code": category}]}]
    if labels:
        resource["securityLabel"] = [
            {"coding": [{"system": VISIBILITY, "code": label}]} for label in labels
        ]
    response = client.post("/fhir/DocumentReference", json=resource, headers=headers)
    assert response.status_code == 201, response.text
    stored = response.json()
    return stored["id"], stored["content"][0]["attachment"]["url"].rpartition("/")[2]


def create_patient_born(client: Any, tokens: Tokens, seed: int, born: date) -> tuple[str, str]:
    """A patient born on this day opens their own record; returns (record id, INS)."""
    ins_value = ins(seed)
    resource = {**patient_resource(ins_value), "birthDate": born.isoformat()}
    response = client.post("/fhir/Patient", json=resource, headers=tokens.patient(ins_value))
    assert response.status_code == 201, response.text
    return response.headers["Location"].split("/Patient/")[1].split("/")[0], ins_value


def years_ago(years: int) -> date:
    today = datetime.now(UTC).date()
    return today.replace(year=today.year - years, day=min(today.day, 28))


def policy_url(patient_id: str, rest: str = "") -> str:
    return f"/api/patients/{patient_id}/policy{rest}"


def add_professional(
    client: Any, headers: dict[str, str], patient_id: str, where: str, idnps: str
) -> Any:
    method = client.put if where == "/treating-doctor" else client.post
    return method(
        policy_url(patient_id, where), json={"professional": professional(idnps)}, headers=headers
    )


def grant(
    client: Any,
    headers: dict[str, str],
    patient_id: str,
    caregiver: str,
    *,
    scope: str = "read",
    categories: tuple[str, ...] = ("*",),
    days: int = 30,
) -> Any:
    expires = datetime.now(UTC) + timedelta(days=days)
    return client.post(
        policy_url(patient_id, "/delegations"),
        json={
            "caregiver": caregiver,
            "scope": scope,
            "categories": list(categories),
            "expires": expires.isoformat(),
        },
        headers=headers,
    )


def declare_emergency(
    client: Any,
    headers: dict[str, str],
    patient_id: str,
    reason: str = "Patient inconscient aux urgences",
    mode: str = "break-glass",
) -> Any:
    return client.post(
        f"/api/patients/{patient_id}/emergency-access",
        json={"reason": reason, "mode": mode},
        headers=headers,
    )


def set_mask(client: Any, headers: dict[str, str], patient_id: str, document_id: str) -> Any:
    return client.post(
        policy_url(patient_id, "/masks"), json={"document": document_id}, headers=headers
    )


def audit_entries(services: Services, patient_id: str) -> list[AuditEntry]:
    with services.session_factory() as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.patient_id == patient_id)
                .order_by(AuditEntry.id)
            ).all()
        )


def sees(client: Any, headers: dict[str, str], document_id: str) -> bool:
    response = client.get(f"/fhir/DocumentReference/{document_id}", headers=headers)
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200
