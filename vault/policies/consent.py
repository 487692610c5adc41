"""A patient's access policy as FHIR R4 Consent resources, after the IHE Privacy Consent on
FHIR (PCF) model: one Consent per relationship in force (patient-privacy scope, LOINC
59284-0 category, an OPTIN or OPTOUT policy rule, and a provision naming who, what, when
and for which purpose), plus one for the documents the patient masked."""

from __future__ import annotations

from typing import Any

from vault.access.state import (
    CAREGIVER_SYSTEM,
    MASKED,
    PATIENT_INDEX_SYSTEM,
    VISIBILITY_SYSTEM,
    EntryKind,
)
from vault.identity.principal import IDNPS_SYSTEM
from vault.models import AccessPolicyEntry
from vault.policies.management import PolicyView

SCOPE = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy",
        }
    ]
}
CATEGORY = {"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACTION = "http://terminology.hl7.org/CodeSystem/consentaction"
PURPOSE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
# Which relationship a Consent stands for, in this vault's vocabulary (docs/access.md).
KIND_SYSTEM = "urn:vault:access-policy"

DENYING = frozenset({EntryKind.BLOCK, EntryKind.EMERGENCY_OPT_OUT})
ACTOR_ROLE = {
    EntryKind.REPRESENTATIVE: (ROLE_CODE, "GUARD"),
    EntryKind.DELEGATION: (PARTICIPATION, "IRCP"),
}


def grantee_identifier(subject: str) -> dict[str, str]:
    """How a policy names a caregiver or representative, as a FHIR Identifier."""
    kind, _, value = subject.partition(":")
    if kind == "caregiver":
        return {"system": CAREGIVER_SYSTEM, "value": value}
    return {"system": PATIENT_INDEX_SYSTEM, "value": value}


def professional_identifier(idnps: str) -> dict[str, str]:
    return {"system": IDNPS_SYSTEM, "value": idnps}


def consents(view: PolicyView) -> list[dict[str, Any]]:
    resources = [_consent(view, row) for row in view.entries]
    if view.masked_documents:
        resources.append(_masks(view))
    return resources


def _consent(view: PolicyView, row: AccessPolicyEntry) -> dict[str, Any]:
    kind = EntryKind(row.kind)
    deny = kind in DENYING
    provision: dict[str, Any] = {
        "type": "deny" if deny else "permit",
        "period": _period(row),
    }
    if row.subject is not None:
        provision["actor"] = [_actor(kind, row.subject)]
    actions = ["access"]
    if kind is EntryKind.DELEGATION and row.scope == "read-upload":
        actions.append("collect")
    provision["action"] = [{"coding": [{"system": ACTION, "code": code}]} for code in actions]
    if kind in (EntryKind.EMERGENCY, EntryKind.EMERGENCY_OPT_OUT):
        provision["purpose"] = [{"system": PURPOSE, "code": "ETREAT"}]
    if kind is EntryKind.EMERGENCY:
        # Emergency access never reaches masked documents.
        provision["provision"] = [
            {"type": "deny", "securityLabel": [{"system": VISIBILITY_SYSTEM, "code": MASKED}]}
        ]
    if kind is EntryKind.DELEGATION:
        provision["code"] = [
            {"coding": [_category_coding(token)]} for token in row.categories or ["*"]
        ]
        provision["provision"] = [
            {
                "type": "deny",
                "securityLabel": [
                    {"system": VISIBILITY_SYSTEM, "code": code}
                    for code in (MASKED, "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX")
                ],
            }
        ]
    return {
        "resourceType": "Consent",
        "id": row.id,
        "meta": {"versionId": str(row.version_added), "lastUpdated": row.starts_at.isoformat()},
        "status": "active",
        "scope": SCOPE,
        "category": [CATEGORY, {"coding": [{"system": KIND_SYSTEM, "code": kind.value}]}],
        "patient": {"reference": f"Patient/{view.patient_id}"},
        "dateTime": row.starts_at.isoformat(),
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTOUT" if deny else "OPTIN"}]},
        "provision": provision,
    }


def _masks(view: PolicyView) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "id": f"masks-{view.patient_id}",
        "meta": {"lastUpdated": view.at.isoformat()},
        "status": "active",
        "scope": SCOPE,
        "category": [CATEGORY, {"coding": [{"system": KIND_SYSTEM, "code": "mask"}]}],
        "patient": {"reference": f"Patient/{view.patient_id}"},
        "dateTime": view.at.isoformat(),
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTOUT"}]},
        "provision": {
            "type": "deny",
            "actor": [
                {
                    "role": {"coding": [{"system": ROLE_CLASS, "code": "PROV"}]},
                    "reference": {
                        "display": "Healthcare professionals other than the author and the "
                        "treating doctor"
                    },
                }
            ],
            "action": [{"coding": [{"system": ACTION, "code": "access"}]}],
            "securityLabel": [{"system": VISIBILITY_SYSTEM, "code": MASKED}],
            "data": [
                {"meaning": "instance", "reference": {"reference": f"DocumentReference/{doc}"}}
                for doc in view.masked_documents
            ],
        },
    }


def _actor(kind: EntryKind, subject: str) -> dict[str, Any]:
    system, code = ACTOR_ROLE.get(kind, (PARTICIPATION, "PRCP"))
    identifier = (
        grantee_identifier(subject)
        if kind in (EntryKind.DELEGATION, EntryKind.REPRESENTATIVE)
        else professional_identifier(subject)
    )
    return {
        "role": {"coding": [{"system": system, "code": code}]},
        "reference": {"identifier": identifier},
    }


def _period(row: AccessPolicyEntry) -> dict[str, str]:
    period = {"start": row.starts_at.isoformat()}
    if row.expires_at is not None:
        period["end"] = row.expires_at.isoformat()
    return period


def _category_coding(token: str) -> dict[str, str]:
    system, sep, code = token.rpartition("|")
    if sep and system:
        return {"system": system, "code": code}
    return {"code": token}
