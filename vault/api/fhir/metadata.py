"""``GET /fhir/metadata``: exactly what this server supports."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from vault import __version__
from vault.api.responses import FhirResponse
from vault.http.deps import public

router = APIRouter(prefix="/fhir", tags=["Capabilities"])

DOCUMENT_SEARCH = [
    ("patient", "reference"),
    ("patient.identifier", "token"),
    ("status", "token"),
    ("type", "token"),
    ("category", "token"),
    ("date", "date"),
    ("author", "reference"),
    ("author.identifier", "token"),
    ("security-label", "token"),
]


def capability_statement(base: str) -> dict[str, Any]:
    def interactions(*codes: str) -> list[dict[str, str]]:
        return [{"code": code} for code in codes]

    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-24",
        "kind": "instance",
        "software": {"name": "vault", "version": __version__},
        "implementation": {"description": "Patient health-document vault", "url": f"{base}/fhir"},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json"],
        "patchFormat": ["application/fhir+json", "application/json-patch+json"],
        "instantiates": [
            "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentRecipient",
            "https://profiles.ihe.net/ITI/MHD/CapabilityStatement/IHE.MHD.DocumentResponder",
        ],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "OAuth 2 bearer tokens; see /.well-known/smart-configuration",
                },
                "interaction": interactions("transaction"),
                "resource": [
                    {
                        "type": "DocumentReference",
                        "versioning": "versioned",
                        "readHistory": True,
                        "conditionalCreate": False,
                        "interaction": interactions(
                            "create",
                            "read",
                            "vread",
                            "history-instance",
                            "patch",
                            "delete",
                            "search-type",
                        ),
                        "searchParam": [
                            {"name": name, "type": kind} for name, kind in DOCUMENT_SEARCH
                        ],
                    },
                    {"type": "Binary", "interaction": interactions("read")},
                    {
                        "type": "List",
                        "documentation": "SubmissionSets stored by ITI-65, readable by who may read every document they list",
                        "interaction": interactions("read"),
                    },
                    {
                        "type": "Patient",
                        "conditionalCreate": True,
                        "interaction": interactions("create", "read"),
                        "operation": [
                            {
                                "name": "everything",
                                "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                                "documentation": "The Patient, its Consents, DocumentReferences (content by reference to Binary) and AuditEvents, paged with _count; for the patient or a minor's legal representative",
                            }
                        ],
                    },
                    {
                        "type": "Consent",
                        # The patient's access policy (IHE PCF); changed through /api.
                        "interaction": interactions("search-type"),
                        "searchParam": [{"name": "patient", "type": "reference"}],
                    },
                    {
                        "type": "AuditEvent",
                        # The IHE BALP profiles the access history uses (docs/audit.md).
                        "supportedProfile": [
                            f"https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.{name}"
                            for name in (
                                "PatientCreate",
                                "PatientRead",
                                "PatientQuery",
                                "PatientUpdate",
                                "PatientDelete",
                                "PrivacyDisclosure.Source",
                            )
                        ],
                        "interaction": interactions("search-type"),
                        "searchParam": [{"name": "patient", "type": "reference"}],
                    },
                ],
            }
        ],
    }


@router.get(
    "/metadata", summary="CapabilityStatement", dependencies=[public("the CapabilityStatement")]
)
def metadata(request: Request) -> Response:
    return FhirResponse(capability_statement(request.app.state.services.settings.issuer))
