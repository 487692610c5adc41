"""What the benchmark sends: PDF documents, patients' INS, and request bodies.

Bodies are built from templates with the base64 and hash of each content computed once,
so the clients spend their time waiting on the server, not encoding.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
LOINC = "http://loinc.org"
CLASS_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
# The professional whose software feeds the records, and who authored the bulk-loaded ones.
AUTHOR_IDNPS = "810003456789"
KB = 1000
MB = 1000 * 1000


def ins_for(number: int) -> str:
    """The INS of bench patient ``number``: well formed, with a correct key, one per number
    (up to 10^8 patients)."""
    sex = 1 + number % 2
    year = number // 10**6 % 100
    body = f"{sex}{year:02d}{1 + number % 12:02d}75{number % 10**6:06d}"
    key = 97 - int(body) % 97
    return f"{body}{key:02d}"


def pdf_document(size: int, seed: int) -> bytes:
    """A well-formed PDF of exactly ``size`` bytes whose page stream is incompressible, as
    the compressed streams of real scanned reports are."""
    rng = random.Random(seed)  # noqa: S311 - reproducible, not a secret
    head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
    catalog = (
        b"1 0 obj <</Type/Catalog/Pages 2 0 R>> endobj\n"
        b"2 0 obj <</Type/Pages/Kids[3 0 R]/Count 1>> endobj\n"
        b"3 0 obj <</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents 4 0 R>> endobj\n"
    )
    tail = b"\nendstream endobj\ntrailer <</Root 1 0 R/Size 5>>\n%%EOF\n"
    overhead = len(head) + len(catalog) + len(tail) + 64
    payload = max(0, size - overhead)
    stream = rng.randbytes(payload)
    obj = f"4 0 obj <</Length {payload}/Filter/FlateDecode>> stream\n".encode()
    document = head + catalog + obj + stream + tail
    if len(document) < size:
        document = document.replace(b"%%EOF\n", b"%%EOF\n" + b" " * (size - len(document)))
    return document[:size] if len(document) > size else document


@dataclass(frozen=True)
class Content:
    """A document's bytes with what a sender computes once: base64, size and SHA-1."""

    data: bytes
    b64: str
    sha1_b64: str

    @classmethod
    def of(cls, data: bytes) -> Content:
        return cls(
            data,
            base64.b64encode(data).decode(),
            base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode(),
        )


def document_reference(
    patient_id: str, content: Content, *, inline: bool, attachment_url: str | None = None
) -> dict[str, Any]:
    attachment: dict[str, Any] = {
        "contentType": "application/pdf",
        "title": "Compte rendu de biologie",
        "size": len(content.data),
        "hash": content.sha1_b64,
    }
    if inline:
        attachment["data"] = content.b64
    if attachment_url is not None:
        attachment["url"] = attachment_url
    return {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": "11502-2"}]},
        "category": [{"coding": [{"system": CLASS_SYSTEM, "code": "10"}]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": "2026-11-20T10:00:00+01:00",
        "author": [{"identifier": {"system": IDNPS_SYSTEM, "value": AUTHOR_IDNPS}}],
        "content": [{"attachment": attachment}],
    }


def iti105_body(patient_id: str, content: Content) -> bytes:
    """ITI-105 Simplified Publish: the document inline in ``attachment.data``."""
    return json.dumps(document_reference(patient_id, content, inline=True)).encode()


def iti65_body(patient_id: str, contents: list[Content]) -> bytes:
    """ITI-65 Provide Document Bundle: SubmissionSet, and a DocumentReference with its
    Binary for each document."""
    subject = {"reference": f"Patient/{patient_id}"}
    entries: list[dict[str, Any]] = []
    listed = []
    for content in contents:
        doc_url, bin_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
        listed.append({"item": {"reference": doc_url}})
        entries.append(
            {
                "fullUrl": doc_url,
                "resource": document_reference(
                    patient_id, content, inline=False, attachment_url=bin_url
                ),
                "request": {"method": "POST", "url": "DocumentReference"},
            }
        )
        entries.append(
            {
                "fullUrl": bin_url,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/pdf",
                    "data": content.b64,
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
        "entry": listed,
    }
    entries.insert(
        0,
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": submission,
            "request": {"method": "POST", "url": "List"},
        },
    )
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode()


def patient_resource(ins: str, number: int) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": INS_SYSTEM, "value": ins}],
        "name": [{"family": f"Patient{number}", "given": ["Claire"]}],
        "gender": "female" if number % 2 else "male",
        "birthDate": f"19{50 + number % 50}-0{1 + number % 9}-1{number % 10}",
    }
