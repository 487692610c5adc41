"""Prometheus metrics: what operators need, and not one identifier."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from tests.factories import create_patient, publish
from vault.api.app import create_app
from vault.observability import metrics

CONTENT = b"%PDF-1.7 metrics report"


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_metrics_count_requests_ingestion_encryption_decisions_audit_and_key_calls(client, tokens):
    route = {"method": "POST", "route": "/fhir/DocumentReference", "status": "201"}
    before = {
        "requests": sample("vault_http_requests_total", route),
        "ingested": sample("vault_documents_ingested_total"),
        "encrypted": sample("vault_bytes_encrypted_total", {"kind": "content"}),
        "allowed": sample(
            "vault_access_decisions_total", {"permission": "document:read", "outcome": "allowed"}
        ),
        "denied": sample(
            "vault_access_decisions_total", {"permission": "document:read", "outcome": "denied"}
        ),
        "audited": sample("vault_audit_appends_total", {"outcome": "success"}),
        "refusals": sample("vault_audit_appends_total", {"outcome": "denied"}),
        "wraps": sample("vault_key_provider_calls_total", {"operation": "wrap", "outcome": "ok"}),
        "latency": sample(
            "vault_http_request_duration_seconds_count",
            {"method": "POST", "route": "/fhir/DocumentReference"},
        ),
    }
    patient_id, ins_value = create_patient(client, tokens, seed=61)
    _other_id, other_ins = create_patient(client, tokens, seed=62)
    stored = publish(client, tokens.professional(), patient_id, CONTENT)
    assert (
        client.get(
            f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(ins_value)
        ).status_code
        == 200
    )
    assert (
        client.get(
            f"/fhir/DocumentReference/{stored['id']}", headers=tokens.patient(other_ins)
        ).status_code
        == 404
    )

    text = scrape(client)

    assert sample("vault_http_requests_total", route) == before["requests"] + 1
    assert sample("vault_documents_ingested_total") == before["ingested"] + 1
    assert sample("vault_bytes_encrypted_total", {"kind": "content"}) == before["encrypted"] + len(
        CONTENT
    )
    assert (
        sample(
            "vault_access_decisions_total", {"permission": "document:read", "outcome": "allowed"}
        )
        == before["allowed"] + 1
    )
    assert (
        sample("vault_access_decisions_total", {"permission": "document:read", "outcome": "denied"})
        == before["denied"] + 1
    )
    assert sample("vault_audit_appends_total", {"outcome": "success"}) > before["audited"]
    assert sample("vault_audit_appends_total", {"outcome": "denied"}) == before["refusals"] + 1
    assert (
        sample("vault_key_provider_calls_total", {"operation": "wrap", "outcome": "ok"})
        > before["wraps"]
    )
    assert (
        sample(
            "vault_http_request_duration_seconds_count",
            {"method": "POST", "route": "/fhir/DocumentReference"},
        )
        == before["latency"] + 1
    )
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "vault_db_pool_size",
        "vault_db_pool_checked_out",
        "vault_db_pool_checked_in",
        "vault_db_pool_overflow",
        "vault_db_pool_checkouts",
        "vault_key_provider_call_duration_seconds",
        "vault_http_requests_in_progress",
        "process_cpu_seconds",
    } <= names


def test_no_identifier_ever_becomes_a_label(client, tokens):
    patient_id, ins_value = create_patient(client, tokens, seed=63)
    stored = publish(client, tokens.professional(), patient_id, CONTENT)
    binary_id = stored["content"][0]["attachment"]["url"].split("/")[-1]
    headers = tokens.patient(ins_value)
    client.get(f"/fhir/DocumentReference/{stored['id']}", headers=headers)
    client.get(f"/fhir/Binary/{binary_id}", headers=headers)
    client.get(
        "/fhir/DocumentReference",
        params={"patient.identifier": f"urn:oid:1.2.250.1.213.1.4.8|{ins_value}"},
        headers=headers,
    )
    client.get(f"/no/such/route/{ins_value}", headers=headers)
    client.request(f"X{ins_value}"[:16], f"/fhir/Patient/{patient_id}", headers=headers)

    text = scrape(client)

    for identifier in (patient_id, ins_value, stored["id"], binary_id, "Bearer", "eyJ"):
        assert identifier not in text
    label_values = {
        value
        for family in text_string_to_metric_families(text)
        for metric_sample in family.samples
        for value in metric_sample.labels.values()
    }
    uuid_like = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")
    assert not [
        value
        for value in label_values
        if uuid_like.search(value) or (value.isdigit() and len(value) > 3)
    ]
    assert any(value.startswith("/fhir/DocumentReference/{") for value in label_values)
    assert metrics.UNMATCHED_ROUTE in label_values
    assert "OTHER" in label_values


def test_an_ingestion_counts_only_once_committed(services):
    before = sample("vault_documents_ingested_total")
    with services.session_factory() as session:
        metrics.document_ingested(session)
        session.rollback()
    assert sample("vault_documents_ingested_total") == before
    with services.session_factory() as session, session.begin():
        metrics.document_ingested(session)
    assert sample("vault_documents_ingested_total") == before + 1


@pytest.mark.parametrize(
    ("header", "status"),
    [(None, 401), ("Bearer wrong-scrape-token", 401), ("Bearer right-scrape-token", 200)],
    ids=["none", "wrong", "right"],
)
def test_a_metrics_token_guards_the_scrape(services, settings, header, status):
    guarded = settings.model_copy(update={"metrics_token": SecretStr("right-scrape-token")})
    with TestClient(create_app(guarded, replace(services, settings=guarded))) as client:
        response = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert response.status_code == status
    if status == 401:
        assert response.content == b""
