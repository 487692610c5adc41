"""Audit entries rendered as IHE BALP AuditEvents: one test per pattern, each validated as
FHIR R4."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from vault.audit.events import BALP, audit_event
from vault.models import AuditEntry

BASE = "https://vault.example.fr"


def _entry(**fields) -> AuditEntry:
    base = {
        "id": 42,
        "occurred_at": datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
        "chain_key": "patient-1",
        "chain_seq": 5,
        "entry_hash": bytes(range(32)),
        "patient_id": "patient-1",
        "action": "R",
        "outcome": "success",
        "purpose": "TREAT",
        "actor_role": "professional",
        "actor_id": "810003456789",
        "on_behalf_of": None,
        "client_id": "dmp-client",
        "token_id": "jti-1",
        "source_ip": "192.0.2.10",
        "resource_type": "DocumentReference",
        "resource_id": "doc-1",
        "detail": {"permission": "document:read"},
        "leaf_index": 9,
    }
    return AuditEntry(**{**base, **fields})


@pytest.mark.parametrize(
    ("action", "profile", "interaction", "client_role"),
    [
        ("C", "PatientCreate", "create", "110153"),
        ("R", "PatientRead", "read", "110152"),
        ("E", "PatientQuery", "search-type", "110153"),
        ("U", "PatientUpdate", "update", "110153"),
        ("D", "PatientDelete", "delete", "110150"),
    ],
)
def test_each_interaction_follows_its_balp_pattern(action, profile, interaction, client_role):
    event = audit_event(_entry(action=action), BASE)

    AuditEvent.model_validate(event)
    assert event["meta"]["profile"] == [BALP + profile]
    assert event["type"]["code"] == "rest"
    assert event["subtype"] == [
        {"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}
    ]
    assert event["action"] == action
    assert event["outcome"] == "0"
    client, server, user = event["agent"]
    assert client["type"]["coding"][0]["code"] == client_role
    assert client["network"] == {"address": "192.0.2.10", "type": "2"}
    assert server["network"] == {"address": f"{BASE}/fhir", "type": "5"}
    assert user["who"]["identifier"]["value"] == "810003456789"
    assert user["requestor"] is True
    assert "jti-1" not in str(event)


def test_a_search_records_the_shape_of_the_query_not_its_criteria():
    event = audit_event(_entry(action="E", resource_id=None), BASE)
    (query,) = [e for e in event["entity"] if e["role"]["code"] == "24"]
    assert query["description"] == "DocumentReference?patient=patient-1"


def test_an_emergency_read_is_a_privacy_disclosure():
    event = audit_event(_entry(purpose="ETREAT"), BASE)

    AuditEvent.model_validate(event)
    assert event["meta"]["profile"] == [BALP + "PrivacyDisclosure.Source"]
    assert event["type"]["code"] == "110106"
    assert event["subtype"][0]["code"] == "disclose"
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    # BALP: the source agent is the server that recorded the event.
    source = next(a for a in event["agent"] if a["type"]["coding"][0]["code"] == "110153")
    assert source["who"] == event["source"]["observer"]


def test_a_refusal_claims_no_profile_and_says_it_was_refused():
    event = audit_event(_entry(outcome="denied"), BASE)
    AuditEvent.model_validate(event)
    assert "meta" not in event
    assert (event["outcome"], event["outcomeDesc"]) == ("4", "access refused")


@pytest.mark.parametrize(
    ("fields", "who"),
    [
        ({"actor_role": "patient", "actor_id": "patient-1"}, {"reference": "Patient/patient-1"}),
        (
            {"actor_role": "software", "actor_id": "lab", "on_behalf_of": "810000000001"},
            {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810000000001"}},
        ),
        (
            {"actor_role": "caregiver", "actor_id": "carer-9"},
            {"identifier": {"value": "carer-9"}, "display": "caregiver"},
        ),
        ({"actor_role": "anonymous", "actor_id": None}, {"display": "anonymous"}),
    ],
)
def test_the_user_agent_names_whoever_acted(fields, who):
    event = audit_event(_entry(**fields), BASE)
    AuditEvent.model_validate(event)
    assert event["agent"][2]["who"] == who


def test_the_integrity_extension_carries_what_an_inclusion_proof_needs():
    event = audit_event(_entry(), BASE)
    (integrity,) = event["extension"]
    assert integrity["url"] == f"{BASE}/fhir/StructureDefinition/audit-integrity"
    values = {
        e["url"]: next(v for k, v in e.items() if k.startswith("value"))
        for e in integrity["extension"]
    }
    assert values == {
        "chainSequence": 5,
        "entryHash": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "leafIndex": "9",
    }
    assert "leafIndex" not in str(audit_event(_entry(leaf_index=None), BASE))
