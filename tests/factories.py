"""Small builders for test data: tokens, patients, documents, bundles."""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from vault.identity.tokens import EmbeddedIssuer

INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
LOINC = "http://loinc.org"
CLASS_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
DOCTOR = "810003456789"
OTHER_DOCTOR = "810009999999"


def ins(seed: int) -> str:
    """A well-formed INS with a correct key, distinct per seed."""
    body = f"1850{(seed % 9) + 1}75{seed:06d}"[:13].ljust(13, "0")
    key = 97 - int(body) % 97
    return f"{body}{key:02d}"


@dataclass
class Tokens:
    issuer: EmbeddedIssuer

    def patient(self, ins_value: str, scope: str | None = None) -> dict[str, str]:
        return self._headers(self.issuer.mint("patient", ins_value, scope=scope))

    def professional(
        self, idnps: str = DOCTOR, profession: str = "10", scope: str | None = None
    ) -> dict[str, str]:
        return self._headers(
            self.issuer.mint("professional", idnps, profession=profession, scope=scope)
        )

    def software(self, client_id: str = "lab-system", on_behalf_of: str = DOCTOR) -> dict[str, str]:
        return self._headers(self.issuer.mint("software", client_id, on_behalf_of=on_behalf_of))

    def caregiver(self, subject: str = "caregiver-1") -> dict[str, str]:
        return self._headers(self.issuer.mint("caregiver", subject))

    def operator(self, subject: str = "ops-1") -> dict[str, str]:
        return self._headers(self.issuer.mint("operator", subject))

    @staticmethod
    def _headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


def patient_resource(ins_value: str, family: str = "Martin") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": INS_SYSTEM, "value": ins_value}],
        "name": [{"family": family, "given": ["Claire"]}],
        "gender": "female",
        "birthDate": "1985-07-14",
    }


def document_reference(
    subject: dict[str, Any],
    content: bytes = b"%PDF-1.7 lab report",
    *,
    content_type: str = "application/pdf",
    master: str | None = None,
    type_code: str = "11502-2",
    labels: tuple[str, ...] = (),
    inline: bool = True,
    with_hash: bool = True,
) -> dict[str, Any]:
    attachment: dict[str, Any] = {"contentType": content_type, "title": "Compte rendu"}
    if inline:
        attachment["data"] = base64.b64encode(content).decode()
    if with_hash:
        attachment["size"] = len(content)
        attachment["hash"] = base64.b64encode(
            hashlib.sha1(content, usedforsecurity=False).digest()
        ).decode()
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "masterIdentifier": {
            "system": "urn:ietf:rfc:3986",
            "value": master or f"urn:uuid:{uuid.uuid4()}",
        },
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": type_code}]},
        "category": [{"coding": [{"system": CLASS_SYSTEM, "code": "10"}]}],
        "subject": subject,
        "date": "2026-11-20T10:00:00+01:00",
        "author": [{"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": DOCTOR}}],
        "content": [{"attachment": attachment}],
    }
    if labels:
        resource["securityLabel"] = [{"coding": [{"code": label}]} for label in labels]
    return resource


def provide_bundle(
    subject: dict[str, Any],
    documents: list[tuple[bytes, str]],
    *,
    patient_entry: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ITI-65 transaction: SubmissionSet, one DocumentReference and Binary per document."""
    entries: list[dict[str, Any]] = []
    if patient_entry is not None:
        entries.append(patient_entry)
    doc_urls = []
    for content, content_type in documents:
        doc_url, bin_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
        doc_urls.append(doc_url)
        reference = document_reference(subject, content, content_type=content_type, inline=False)
        reference["content"][0]["attachment"]["url"] = bin_url
        entries.append(
            {
                "fullUrl": doc_url,
                "resource": reference,
                "request": {"method": "POST", "url": "DocumentReference"},
            }
        )
        entries.append(
            {
                "fullUrl": bin_url,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": content_type,
                    "data": base64.b64encode(content).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            }
        )
    submission = {
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "code": {
            "coding": [
                {
                    "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                    "code": "submissionset",
                }
            ]
        },
        "subject": subject,
        "date": "2026-11-20T10:00:00+01:00",
        "entry": [{"item": {"reference": url}} for url in doc_urls],
    }
    entries.insert(
        0,
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": submission,
            "request": {"method": "POST", "url": "List"},
        },
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


# -- over HTTP, as a client would ---------------------------------------------------------


def create_patient(client: Any, tokens: Tokens, seed: int = 1) -> tuple[str, str]:
    """A patient opens their own record; returns (record id, INS)."""
    ins_value = ins(seed)
    response = client.post(
        "/fhir/Patient", json=patient_resource(ins_value), headers=tokens.patient(ins_value)
    )
    assert response.status_code == 201, response.text
    return response.headers["Location"].split("/Patient/")[1].split("/")[0], ins_value


def publish(
    client: Any,
    headers: dict[str, str],
    patient_id: str,
    content: bytes = b"%PDF-1.7 report",
    **kw: Any,
) -> dict[str, Any]:
    """ITI-105: one document for the patient; returns the stored DocumentReference."""
    response = client.post(
        "/fhir/DocumentReference",
        json=document_reference({"reference": f"Patient/{patient_id}"}, content, **kw),
        headers=headers,
    )
    assert response.status_code == 201, response.text
    stored: dict[str, Any] = response.json()
    return stored
