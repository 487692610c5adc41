"""``vault demo``: demonstration accounts for trying the patient's space.

A patient (Camille Martin) with documents of different kinds and authors -- a PDF lab
report and an X-ray image from two professionals, a FHIR document (a medical summary),
and a text she added herself -- her treating doctor, and a caregiver (Lucas Martin)
acting for her. Everything goes through the same services, access decisions and audit
as real use: the history shows the professionals' deposits. Seeding twice changes
nothing. Only with the embedded issuer on: its tokens are how the demo accounts sign in.
"""

from __future__ import annotations

import base64
import json
import struct
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vault.access.state import DelegationScope, EntryKind
from vault.errors import VaultError
from vault.identity.principal import Principal, Role
from vault.identity.scopes import DEFAULT_SCOPES, parse_scopes, scopes_for_role
from vault.services import Services
from vault.web.signin import DEMO_CAREGIVER, DEMO_PATIENT
from vault.web.terminology import terminology

INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"  # a test INS


@dataclass(frozen=True)
class DemoProfessional:
    rpps: str
    name: str
    profession: str

    @property
    def idnps(self) -> str:
        return "8" + self.rpps


DOCTOR = DemoProfessional("10003456789", "Dr Claire Durand, médecin généraliste", "10")
RADIOLOGIST = DemoProfessional("10004567891", "Dr Marc Lefèvre, radiologue", "10")
NURSE = DemoProfessional("10005678912", "Sophie Bernard, infirmière", "60")
PROFESSIONALS = (DOCTOR, RADIOLOGIST, NURSE)


@dataclass(frozen=True)
class DemoSeed:
    patient_id: str
    created: bool


def principal(role: Role, subject: str, profession: str | None = None) -> Principal:
    scopes = scopes_for_role(role.value, parse_scopes(DEFAULT_SCOPES[role.value]))
    return Principal(role=role, subject=subject, scopes=scopes, profession=profession)


def seed(services: Services, *, now: datetime | None = None) -> DemoSeed:
    if services.issuer is None:
        raise VaultError("the embedded issuer is off (VAULT_EMBEDDED_ISSUER=false)")
    moment = now or datetime.now(UTC)
    patient = principal(Role.PATIENT, DEMO_PATIENT.subject)
    with services.session_factory.begin() as session:
        actor = services.access.actor(session, patient)
        if actor.own_patient_id is not None:
            return DemoSeed(actor.own_patient_id, created=False)
        record, _ = services.patients.ensure(
            session,
            actor,
            {
                "resourceType": "Patient",
                "identifier": [{"system": INS_SYSTEM, "value": DEMO_PATIENT.subject}],
                "name": [{"family": "Martin", "given": ["Camille"]}],
                "gender": "female",
                "birthDate": "1948-03-12",
            },
            expression="Patient",
        )
        patient_id = record.id
    terms = terminology()

    def publish(
        author: Principal,
        *,
        title: str,
        type_code: str,
        category: str,
        content: bytes,
        content_type: str,
        when: datetime,
        author_name: str | None,
    ) -> None:
        resource: dict[str, Any] = {
            "resourceType": "DocumentReference",
            "masterIdentifier": {
                "system": "urn:ietf:rfc:3986",
                "value": f"urn:uuid:{uuid.uuid4()}",
            },
            "status": "current",
            "type": {"coding": [{"system": terms.type_system, "code": type_code}]},
            "category": [{"coding": [{"system": terms.category_system, "code": category}]}],
            "subject": {"reference": f"Patient/{patient_id}"},
            "date": when.isoformat(),
            "content": [
                {
                    "attachment": {
                        "contentType": content_type,
                        "title": title,
                        "data": base64.b64encode(content).decode(),
                    }
                }
            ],
        }
        if author_name is not None:
            resource["author"] = [
                {
                    "identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": author.subject},
                    "display": author_name,
                }
            ]
        with services.session_factory.begin() as session:
            services.ingestion.publish(session, services.access.actor(session, author), resource)

    doctor = principal(Role.PROFESSIONAL, DOCTOR.idnps, DOCTOR.profession)
    radiologist = principal(Role.PROFESSIONAL, RADIOLOGIST.idnps, RADIOLOGIST.profession)
    publish(
        doctor,
        title="Bilan sanguin",
        type_code="11502-2",
        category="10",
        content=pdf(
            "Bilan sanguin - Camille Martin", ["Hémoglobine : 13,2 g/dL", "Glycémie : 0,95 g/L"]
        ),
        content_type="application/pdf",
        when=moment - timedelta(days=25),
        author_name=DOCTOR.name,
    )
    publish(
        radiologist,
        title="Radiographie du genou droit",
        type_code="18748-4",
        category="31",
        content=png(),
        content_type="image/png",
        when=moment - timedelta(days=60),
        author_name=RADIOLOGIST.name,
    )
    publish(
        doctor,
        title="Synthèse médicale",
        type_code="60591-5",
        category="11",
        content=summary_bundle(patient_id, moment - timedelta(days=10)),
        content_type="application/fhir+json",
        when=moment - timedelta(days=10),
        author_name=DOCTOR.name,
    )
    publish(
        patient,
        title="Mes directives anticipées",
        type_code="42348-3",
        category=terms.patient_category,
        content="Je souhaite que mes proches soient consultés.\nPersonne de confiance : Lucas Martin.\n".encode(),
        content_type="text/plain; charset=utf-8",
        when=moment - timedelta(days=90),
        author_name=None,
    )
    with services.session_factory.begin() as session:
        actor = services.access.actor(session, patient)
        services.policies.add_professional(
            session, actor, patient_id, EntryKind.TREATING_DOCTOR, DOCTOR.idnps
        )
        services.policies.grant_delegation(
            session,
            actor,
            patient_id,
            caregiver=DEMO_CAREGIVER.subject,
            scope=DelegationScope.READ_UPLOAD,
            categories=["*"],
            expires_at=moment + timedelta(days=180),
        )
    return DemoSeed(patient_id, created=True)


def pdf(title: str, lines: list[str]) -> bytes:
    """A small, valid one-page PDF showing the title and lines (Helvetica, WinAnsi)."""

    def text(value: str) -> str:
        encoded = value.encode("cp1252", errors="replace").decode("latin-1")
        return encoded.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    commands = ["BT", "/F1 20 Tf", "72 760 Td", f"({text(title)}) Tj", "/F1 12 Tf"]
    for line in lines:
        commands += ["0 -28 Td", f"({text(line)}) Tj"]
    commands.append("ET")
    stream = "\n".join(commands).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def png(width: int = 160, height: int = 120) -> bytes:
    """A small greyscale PNG (a soft gradient), made here rather than shipped."""
    rows = b"".join(
        b"\x00" + bytes((40 + (x * 150 // width) + (y * 50 // height)) % 256 for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def summary_bundle(patient_id: str, when: datetime) -> bytes:
    """A FHIR document Bundle (a medical summary) whose sections carry narrative."""

    def section(title: str, html: str) -> dict[str, Any]:
        return {
            "title": title,
            "text": {
                "status": "generated",
                "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{html}</div>',
            },
        }

    composition = {
        "resourceType": "Composition",
        "id": "synthese",
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "60591-5"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": when.isoformat(),
        "author": [{"display": DOCTOR.name}],
        "title": "Synthèse médicale",
        "section": [
            section(
                "Antécédents",
                "<ul><li>Hypertension artérielle depuis 2015</li><li>Prothèse de hanche gauche (2020)</li></ul>",
            ),
            section("Traitements en cours", "<p>Ramipril 5 mg, un comprimé le matin.</p>"),
            section("Allergies", "<p>Pénicilline (urticaire).</p>"),
        ],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "document",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "timestamp": when.isoformat(),
        "entry": [{"fullUrl": "urn:uuid:" + str(uuid.uuid4()), "resource": composition}],
    }
    return json.dumps(bundle, ensure_ascii=False).encode()
