"""Audit entries as FHIR R4 AuditEvents following IHE Basic Audit Log Patterns (BALP).

| entry                           | BALP profile                          | type / subtype                   |
|---------------------------------|---------------------------------------|----------------------------------|
| action C, success               | PatientCreate                         | rest / create                    |
| action R, success               | PatientRead                           | rest / read                      |
| action E, success               | PatientQuery                          | rest / search-type               |
| action U, success               | PatientUpdate                         | rest / update                    |
| action D, success               | PatientDelete                         | rest / delete                    |
| purpose ETREAT (emergency)      | PrivacyDisclosure.Source              | DCM 110106 Export / disclose     |
| refused or failed               | none (BALP profiles successes only)   | rest / the interaction           |

One actor's repeated refusals on a page of the patient's history are one AuditEvent: the
newest, with ``period`` spanning them all and the ``refusals-grouped`` extension giving
their number (docs/audit.md).

What the patient sees is who (role, professional identifier, software client, on behalf
of whom), what (their record, the resource), when, the outcome and the purpose of use.
The token id stays in the log (and the SIEM export): it identifies nothing for a patient.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from vault.access.state import CAREGIVER_SYSTEM, PATIENT_INDEX_SYSTEM
from vault.audit.checkpoints import format_time
from vault.identity.principal import IDNPS_SYSTEM
from vault.models import AuditEntry

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
LIFECYCLE = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
OUTCOME = {"success": "0", "denied": "4", "failed": "8"}

PROVENANCE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
SOURCE_ROLE = (DCM, "110153", "Source Role ID")
DESTINATION_ROLE = (DCM, "110152", "Destination Role ID")
APPLICATION = (DCM, "110150", "Application")
CUSTODIAN = (PROVENANCE, "custodian", "Custodian")

Code = tuple[str, str, str]
# action -> (profile, restful interaction, client agent type, server agent type, user type):
# in BALP the data flows from the "source" to the "destination" role.
ACTIONS: dict[str, tuple[str, str, Code, Code, str]] = {
    "C": ("PatientCreate", "create", SOURCE_ROLE, DESTINATION_ROLE, "AUT"),
    "R": ("PatientRead", "read", DESTINATION_ROLE, SOURCE_ROLE, "IRCP"),
    "E": ("PatientQuery", "search-type", SOURCE_ROLE, DESTINATION_ROLE, "IRCP"),
    "U": ("PatientUpdate", "update", SOURCE_ROLE, DESTINATION_ROLE, "AUT"),
    "D": ("PatientDelete", "delete", APPLICATION, CUSTODIAN, "CST"),
}
INTEGRITY_EXTENSION = "/fhir/StructureDefinition/audit-integrity"
REFUSALS_EXTENSION = "/fhir/StructureDefinition/refusals-grouped"


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _who(entry: AuditEntry) -> dict[str, Any]:
    role = entry.actor_role
    if role == "patient" and entry.actor_id:
        return {"reference": f"Patient/{entry.actor_id}"}
    if role == "professional" and entry.actor_id:
        return {"identifier": {"system": IDNPS_SYSTEM, "value": entry.actor_id}}
    if role == "software" and entry.on_behalf_of:
        return {"identifier": {"system": IDNPS_SYSTEM, "value": entry.on_behalf_of}}
    if role == "legal-representative" and entry.actor_id:
        return _representative(entry.actor_id)
    if entry.actor_id:
        return {"identifier": {"value": entry.actor_id}, "display": role}
    return {"display": role}


def _representative(actor_id: str) -> dict[str, Any]:
    """A legal representative, in their own name (the patient is the entity acted on):
    their own record, or the key their representation names them by."""
    kind, colon, value = actor_id.partition(":")
    display = "legal-representative"
    if not colon:
        return {"reference": f"Patient/{actor_id}", "display": display}
    system = CAREGIVER_SYSTEM if kind == "caregiver" else PATIENT_INDEX_SYSTEM
    return {"identifier": {"system": system, "value": value}, "display": display}


def _agents(
    entry: AuditEntry, base: str, client_type: Code, server_type: Code, user_type: str
) -> list[dict[str, Any]]:
    client: dict[str, Any] = {
        "type": {"coding": [_coding(*client_type)]},
        "who": {"identifier": {"value": entry.client_id or entry.actor_role}},
        "requestor": False,
    }
    if entry.source_ip:
        client["network"] = {"address": entry.source_ip, "type": "2"}
    server = {
        "type": {"coding": [_coding(*server_type)]},
        "who": {"display": urlsplit(base).netloc or base},
        "requestor": False,
        "network": {"address": f"{base}/fhir", "type": "5"},
    }
    user: dict[str, Any] = {
        "type": {"coding": [_coding(PARTICIPATION, user_type)]},
        "who": _who(entry),
        "requestor": True,
        "role": [{"text": entry.actor_role}],
        "purposeOfUse": [{"coding": [_coding(ACT_REASON, entry.purpose)]}],
    }
    return [client, server, user]


def _entities(entry: AuditEntry) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    if entry.patient_id:
        entities.append(
            {
                "what": {"reference": f"Patient/{entry.patient_id}"},
                "type": _coding(ENTITY_TYPE, "1", "Person"),
                "role": _coding(OBJECT_ROLE, "1", "Patient"),
            }
        )
    resource_type = entry.resource_type
    if entry.action == "E":
        # The query's PHI-free shape only: its criteria never enter the log.
        query = f"{resource_type or 'DocumentReference'}?patient={entry.patient_id}"
        entities.append(
            {
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "24", "Query"),
                "description": query,
                "query": base64.b64encode(query.encode()).decode(),
            }
        )
    elif resource_type and resource_type != "Patient":
        what: dict[str, Any] = (
            {"reference": f"{resource_type}/{entry.resource_id}"}
            if entry.resource_id
            else {"type": resource_type, "display": f"new {resource_type}"}
        )
        entities.append(
            {
                "what": what,
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
            }
        )
    elif resource_type == "Patient":
        entities.append(
            {
                "what": {"reference": f"Patient/{entry.resource_id or entry.patient_id}"},
                "type": _coding(ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
            }
        )
    return entities


def _integrity(entry: AuditEntry, base: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "chainSequence", "valueInteger": entry.chain_seq},
        {"url": "entryHash", "valueBase64Binary": base64.b64encode(entry.entry_hash).decode()},
    ]
    if entry.leaf_index is not None:
        # A string: FHIR integers are 32-bit and a national log outgrows them.
        parts.append({"url": "leafIndex", "valueString": str(entry.leaf_index)})
    return {"url": f"{base}{INTEGRITY_EXTENSION}", "extension": parts}


# A record's lifetime, as ISO 21089 names its events: (permission, stage) -> code.
RECORD_LIFECYCLE: dict[tuple[str, str | None], tuple[str, str]] = {
    ("record:close", "closed"): ("deactivate", "De-activate Record Lifecycle Event"),
    ("record:close", "archived"): ("archive", "Archive Record Lifecycle Event"),
    ("record:reopen", "reopened"): ("reactivate", "Re-activate Record Lifecycle Event"),
    ("record:delete", "deleted"): ("destroy", "Destroy/Delete Record Lifecycle Event"),
}


def _record_lifecycle(entry: AuditEntry) -> tuple[str, str] | None:
    detail = entry.detail or {}
    stage = detail.get("stage")
    return RECORD_LIFECYCLE.get(
        (str(detail.get("permission")), str(stage) if stage is not None else None)
    )


def audit_event(
    entry: AuditEntry, base: str, *, refusals: int = 1, earliest: datetime | None = None
) -> dict[str, Any]:
    """``refusals`` (with the ``earliest`` of them): how many of one actor's refusals this
    event stands for, when it stands for more than itself."""
    profile, interaction, client_type, server_type, user_type = ACTIONS.get(
        entry.action, ("", "operation", SOURCE_ROLE, DESTINATION_ROLE, "IRCP")
    )
    success = entry.outcome == "success"
    emergency = entry.purpose == "ETREAT"
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(entry.id),
        "extension": [_integrity(entry, base)],
        "type": _coding(EVENT_TYPE, "rest", "Restful Operation"),
        "subtype": [_coding(INTERACTION, interaction)],
        "action": entry.action if entry.action in ACTIONS else "E",
        "recorded": format_time(entry.occurred_at),
        "outcome": OUTCOME.get(entry.outcome, "8"),
        "purposeOfEvent": [{"coding": [_coding(ACT_REASON, entry.purpose)]}],
        "agent": _agents(entry, base, client_type, server_type, user_type),
        "source": {
            "site": urlsplit(base).netloc or base,
            # BALP wants the recording server to be the same "who" as its agent.
            "observer": {"display": urlsplit(base).netloc or base},
            "type": [_coding(SOURCE_TYPE, "4", "Application Server")],
        },
        "entity": _entities(entry),
    }
    if emergency:
        # Emergency access (bris de glace) is a disclosure without the patient's consent.
        event["type"] = _coding(DCM, "110106", "Export")
        event["subtype"].insert(
            0, _coding(LIFECYCLE, "disclose", "Disclose Record Lifecycle Event")
        )
        profile = "PrivacyDisclosure.Source" if entry.action == "R" else ""
    lifecycle = _record_lifecycle(entry)
    if lifecycle is not None:
        # Closing, archiving, reopening, deleting a record (docs/lifecycle.md): said so.
        event["subtype"].insert(0, _coding(LIFECYCLE, *lifecycle))
    if not success:
        event["outcomeDesc"] = (
            "access refused" if entry.outcome == "denied" else "the request failed"
        )
    if refusals > 1:
        event["outcomeDesc"] = f"access refused {refusals} times"
        event["period"] = {
            "start": format_time(earliest or entry.occurred_at),
            "end": format_time(entry.occurred_at),
        }
        event["extension"].append({"url": f"{base}{REFUSALS_EXTENSION}", "valueInteger": refusals})
    if success and profile:
        event["meta"] = {"profile": [BALP + profile]}
    return event
