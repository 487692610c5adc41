"""Over HTTP: the patient's access history as BALP AuditEvents, and the checkpoints and
proofs an outside party verifies with nothing but the snippet in docs/audit.md."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle

from tests.audit.conftest import activity
from tests.factories import OTHER_DOCTOR, create_patient, publish
from vault.models import AuditEntry

DOCS = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def _snippet() -> dict:
    """The standalone verification code of docs/audit.md, run exactly as published."""
    code = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)[0]
    namespace: dict = {}
    exec(code, namespace)
    return namespace


def _history(client, headers, patient_id, **params):
    query = "&".join(f"{k}={v}" for k, v in {"patient": patient_id, **params}.items())
    return client.get(f"/fhir/AuditEvent?{query}", headers=headers)


# -- the access history -----------------------------------------------------------------


def test_the_patient_reads_their_history_newest_first_as_valid_balp_events(client, tokens):
    patient_id, ins_value = activity(client, tokens, 1)

    response = _history(client, tokens.patient(ins_value), patient_id, _count=200)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    Bundle.model_validate(bundle)
    events = [entry["resource"] for entry in bundle["entry"]]
    for event in events:
        AuditEvent.model_validate(event)
    ids = [int(event["id"]) for event in events]
    assert ids == sorted(ids, reverse=True)
    # The read of the history is itself recorded, and shows first.
    newest = events[0]
    assert newest["action"] == "E"
    assert newest["meta"]["profile"] == [
        "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery"
    ]
    kinds = {(event["action"], event["outcome"]) for event in events}
    assert {("C", "0"), ("R", "0"), ("E", "0"), ("R", "4")} <= kinds
    refused = next(e for e in events if e["outcome"] == "4")
    assert "meta" not in refused
    assert any(
        agent.get("who", {}).get("identifier", {}).get("value") == OTHER_DOCTOR
        for agent in refused["agent"]
    )
    for event in events:
        patient = [e for e in event["entity"] if e["role"]["code"] == "1"]
        assert patient == [
            {
                "what": {"reference": f"Patient/{patient_id}"},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            }
        ]
        assert ins_value not in str(event)


def test_the_history_read_itself_is_audited(client, tokens, services):
    patient_id, ins_value = create_patient(client, tokens, 1)
    with services.session_factory() as session:
        before = session.query(AuditEntry).filter_by(patient_id=patient_id).count()

    assert _history(client, tokens.patient(ins_value), patient_id).status_code == 200

    with services.session_factory() as session:
        entries = session.query(AuditEntry).filter_by(patient_id=patient_id).all()
    assert len(entries) == before + 1
    newest = max(entries, key=lambda entry: entry.id)
    assert (newest.action, newest.resource_type, newest.detail["permission"]) == (
        "E",
        "AuditEvent",
        "audit:read",
    )


def test_pages_follow_next_links_without_overlap(client, tokens):
    patient_id, ins_value = activity(client, tokens, 1)
    headers = tokens.patient(ins_value)
    first = _history(client, headers, patient_id, _count=200).json()
    everything = [int(e["resource"]["id"]) for e in first["entry"]]

    seen = []
    url = f"/fhir/AuditEvent?patient={patient_id}&_count=3"
    while url:
        page = client.get(url, headers=headers).json()
        assert len(page["entry"]) <= 3
        seen.extend(int(e["resource"]["id"]) for e in page["entry"])
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)

    # The first page shows its own read; later page reads are newer than the cursor.
    assert seen[1:] == everything
    assert seen[0] > everything[0]


def test_another_patient_a_stranger_and_an_operator_cannot_read_the_history(client, tokens):
    patient_id, _ = activity(client, tokens, 1)
    _, other_ins = create_patient(client, tokens, 2)

    for headers in (
        tokens.patient(other_ins),
        tokens.professional(OTHER_DOCTOR),
        tokens.operator(),
    ):
        response = _history(client, headers, patient_id)
        assert response.status_code == 404
        assert response.json()["resourceType"] == "OperationOutcome"
    unknown = _history(client, tokens.patient(other_ins), "no-such-patient")
    assert unknown.status_code == 404
    assert unknown.json()["issue"][0]["diagnostics"] == response.json()["issue"][0]["diagnostics"]


def test_a_refused_history_read_is_recorded_in_that_patients_chain(client, tokens, services):
    patient_id, _ = create_patient(client, tokens, 1)
    _, other_ins = create_patient(client, tokens, 2)

    _history(client, tokens.patient(other_ins), patient_id)

    with services.session_factory() as session:
        refused = (
            session.query(AuditEntry)
            .filter_by(patient_id=patient_id, outcome="denied", resource_type="AuditEvent")
            .all()
        )
    assert len(refused) == 1


def test_a_patient_without_a_patient_parameter_reads_their_own(client, tokens):
    patient_id, ins_value = create_patient(client, tokens, 1)
    response = client.get("/fhir/AuditEvent", headers=tokens.patient(ins_value))
    assert response.status_code == 200
    subjects = {
        entity["what"]["reference"]
        for entry in response.json()["entry"]
        for entity in entry["resource"]["entity"]
        if entity["role"]["code"] == "1"
    }
    assert subjects == {f"Patient/{patient_id}"}


def test_reads_of_a_document_hidden_from_the_patient_stay_out_of_their_history(client, tokens):
    patient_id, ins_value = create_patient(client, tokens, 1)
    hidden = publish(
        client, tokens.professional(), patient_id, b"result", labels=("INVISIBLE_PATIENT",)
    )
    shown = publish(client, tokens.professional(), patient_id, b"letter")
    for document in (hidden, shown):
        read = client.get(
            f"/fhir/DocumentReference/{document['id']}", headers=tokens.professional()
        )
        assert read.status_code == 200

    events = _history(client, tokens.patient(ins_value), patient_id, _count=200).json()["entry"]

    references = {
        entity.get("what", {}).get("reference")
        for entry in events
        for entity in entry["resource"]["entity"]
    }
    assert f"DocumentReference/{shown['id']}" in references
    assert f"DocumentReference/{hidden['id']}" not in references


def test_bad_search_parameters_are_refused_with_an_operation_outcome(client, tokens):
    patient_id, ins_value = create_patient(client, tokens, 1)
    headers = tokens.patient(ins_value)
    for query in (
        f"patient={patient_id}&date=2026",
        f"patient={patient_id}&_cursor=abc",
        f"patient={patient_id}&_count=-1",
        f"patient={patient_id}&patient={patient_id}",
    ):
        response = client.get(f"/fhir/AuditEvent?{query}", headers=headers)
        assert response.status_code == 400, query
        assert response.json()["resourceType"] == "OperationOutcome"
    professional = client.get("/fhir/AuditEvent", headers=tokens.professional())
    assert professional.status_code == 400


def test_the_history_needs_a_token(client):
    assert client.get("/fhir/AuditEvent?patient=x").status_code == 401


# -- checkpoints and proofs --------------------------------------------------------------


def test_an_outside_party_verifies_checkpoints_and_proofs_with_the_published_snippet(
    client, tokens, services
):
    snippet = _snippet()
    patient_id, ins_value = activity(client, tokens, 1)
    old = services.audit_log.checkpoints.make(services.session_factory)
    activity(client, tokens, 2)
    services.audit_log.checkpoints.make(services.session_factory)
    headers = tokens.patient(ins_value)

    key = client.get("/audit/public-key", headers=headers).json()
    latest = client.get("/audit/checkpoints/latest", headers=headers).json()
    kept = client.get(f"/audit/checkpoints/{old.tree_size}", headers=headers).json()
    origin = services.audit_log.checkpoints.origin
    size, root = snippet["open_checkpoint"](latest["note"], key["verifierKey"], origin)
    old_size, old_root = snippet["open_checkpoint"](kept["note"], key["verifierKey"], origin)
    assert (size, base64.b64encode(root).decode()) == (latest["treeSize"], latest["rootHash"])

    # The patient checks that one of their AuditEvents is in the signed tree.
    event = _history(client, headers, patient_id, _count=200).json()["entry"][-1]["resource"]
    integrity = {e["url"]: e for e in event["extension"][0]["extension"]}
    leaf = int(integrity["leafIndex"]["valueString"])
    proof = client.get(
        f"/audit/proofs/inclusion?leaf={leaf}&tree_size={size}", headers=headers
    ).json()
    assert proof["entryHash"] == integrity["entryHash"]["valueBase64Binary"]
    b64 = base64.b64decode
    path = [b64(p) for p in proof["auditPath"]]
    assert snippet["verify_inclusion"](
        leaf, size, snippet["leaf_hash"](b64(proof["entryHash"])), path, root
    )
    assert not snippet["verify_inclusion"](
        leaf, size, snippet["leaf_hash"](b"\x00" * 32), path, root
    )
    by_entry = client.get(f"/audit/proofs/inclusion?entry={event['id']}", headers=headers).json()
    assert by_entry["auditPath"] == proof["auditPath"]

    step = client.get(
        f"/audit/proofs/consistency?first={old_size}&second={size}", headers=headers
    ).json()
    consistency = [b64(p) for p in step["consistencyPath"]]
    assert snippet["verify_consistency"](old_size, size, old_root, root, consistency)
    assert not snippet["verify_consistency"](old_size, size, root, root, consistency)


def test_checkpoints_are_listed_newest_first_and_paged(client, tokens, services):
    for seed in (1, 2, 3):
        activity(client, tokens, seed, documents=1)
        services.audit_log.checkpoints.make(services.session_factory)
    headers = tokens.operator()

    page = client.get("/audit/checkpoints?_count=2", headers=headers).json()
    rest = client.get(page["next"], headers=headers).json()

    sizes = [c["treeSize"] for c in page["checkpoints"] + rest["checkpoints"]]
    assert len(sizes) == 3
    assert sizes == sorted(sizes, reverse=True)


def test_proof_requests_outside_the_tree_are_refused(client, tokens, services):
    headers = tokens.operator()
    assert client.get("/audit/checkpoints/latest", headers=headers).status_code == 404
    assert client.get("/audit/proofs/inclusion?leaf=0", headers=headers).status_code == 404
    activity(client, tokens, 1, documents=1)
    size = services.audit_log.checkpoints.make(services.session_factory).tree_size
    for url in (
        f"/audit/proofs/inclusion?leaf={size}&tree_size={size}",
        f"/audit/proofs/inclusion?leaf=0&tree_size={size + 1}",
        "/audit/proofs/inclusion?leaf=0&entry=1",
        "/audit/proofs/inclusion",
        f"/audit/proofs/consistency?first={size + 1}&second={size}",
        "/audit/proofs/consistency?first=0",
        "/audit/proofs/inclusion?leaf=abc",
    ):
        response = client.get(url, headers=headers)
        assert response.status_code == 400, url
        assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get("/audit/checkpoints/999999", headers=headers).status_code == 404
    assert client.get("/audit/checkpoints/latest").status_code == 401


def test_the_capability_statement_lists_the_audit_event_search(client):
    statement = client.get("/fhir/metadata").json()
    (audit,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "AuditEvent"]
    assert audit["interaction"] == [{"code": "search-type"}]
    assert audit["searchParam"] == [{"name": "patient", "type": "reference"}]
