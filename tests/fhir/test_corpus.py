"""Conformance with what real senders produce: the public examples in ../shared/corpus.

Each example has a deliberate outcome (DECISIONS below, explained in docs/fhir.md), and a
test that proves it over HTTP on PostgreSQL. Accepted documents read back byte-identical.

The examples refer to patients and documents on the server they were written for
(``Patient/ex-patient``, ``Patient/fr-patient-123``, ``DocumentReference/doc-old``). The
tests create those on this vault first -- over HTTP, as a client would -- and substitute the
ids it assigned in the example's text; nothing else of an example is changed unless a test
says so and why.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.factories import INS_SYSTEM, create_patient, document_reference, provide_bundle
from tests.fhir.support import (
    assert_refused,
    corpus_json,
    corpus_text,
    document_content,
    download,
    issue,
    response_entries,
    snapshot,
    warnings_of,
)

SIMPLE = "ihe-mhd/Bundle-ex-comprehensiveProvideDocumentBundleSimple.json"
MULTIPLE = "ihe-mhd/Bundle-ex-comprehensiveProvideDocumentBundleMultiple.json"
ADD_TO_FOLDER = "ihe-mhd/Bundle-ex-ProvideDocumentBundle-addToFolder.json"
IHE_WITH_BINARY = "ihe-mhd/DocumentReference-ex-DocumentReferenceComprehensiveWithBinary.json"
IHE_PATCH = "ihe-mhd/Parameters-ex-patchParameters.json"
ANS_REPLACE = "ans-pdsm/Bundle-bundle-exemple-comprehensiveprovidedocument-replace.json"
ANS_CRBIO_DRAFT = "ans-pdsm/Bundle-Bundle-CRBio-Replace-ANS.json"
ANS_PDSM_DRAFT = "ans-pdsm/Bundle-PDSm-example-comprehensiveProvideDocumentBundleReplace.json"
ANS_SIMPLIFIED = "ans-pdsm/DocumentReference-PDSmSimplifiedExample.json"
ANS_DOC_OLD = "ans-pdsm/DocumentReference-doc-old.json"
ANS_DOCUMENT = "ans-pdsm/DocumentReference-exemple-pdsm-documentreference.json"
ANS_BINARY = "ans-pdsm/Binary-6789.json"
ANS_SUBMISSION_SET = "ans-pdsm/List-ExampleSubmissionSet.json"
ANS_FOLDER = "ans-pdsm/List-ExampleFolder.json"
ANS_PATIENT = "ans-pdsm/Patient-fr-patient-123.json"
HL7_JPEG = "hl7-r4/binary-f006.json"
HL7_REPORT_WITH_PDF = "hl7-r4/diagnosticreport-example.json"
HL7_LIPIDS = "hl7-r4/diagnosticreport-example-lipids.json"
HL7_COMPOSITION = "hl7-r4/composition-example.json"
HL7_TRANSACTION = "hl7-r4/bundle-transaction.json"
HL7_XDS = "hl7-r4/xds-example.json"
HL7_DOCUMENT_REFERENCE = "hl7-r4/documentreference-example.json"
HL7_PATIENT = "hl7-r4/patient-example.json"
SYNTHEA = "synthea/Gabriele201_Rohan584_b0223c9b-0019-42b0-99b8-7d689d7f8414.json"

# The INS the ANS replace example's contained sourcePatientInfo gives fr-patient-123.
ANS_PATIENT_INS = "180017505600103"

NOT_SUBMISSIONS = [
    "hl7-r4/auditevent-example-disclosure.json",
    "hl7-r4/auditevent-example.json",
    "hl7-r4/consent-example-Out.json",
    "hl7-r4/consent-example-notThis.json",
    "hl7-r4/consent-example-signature.json",
    "hl7-r4/consent-example-smartonfhir.json",
    "hl7-r4/consent-example.json",
    "hl7-r4/practitioner-example.json",
    "ihe-mhd/AuditEvent-ex-auditProvideBundle-source.json",
    "ans-pdsm/Organization-org-example.json",
]
NOT_TRANSACTIONS = [
    "ans-pdsm/Bundle-a9c10f8a-882d-4000-a280-7150e0aeb478.json",
    "ihe-mhd/Bundle-ex-response-minimalProvideDocumentBundleSimple.json",
    "ihe-mhd/Bundle-Bundle-FindDocumentReferences.json",
    "hl7-r4/diagnosticreport-example-f001-bloodexam.json",
    HL7_LIPIDS,
    HL7_REPORT_WITH_PDF,
]

ACCEPTED = "accepted"
WARNED = "accepted, with a warning in the entry's OperationOutcome"
REFUSED = "refused with an OperationOutcome, nothing stored"
ASSEMBLED = "accepted as part of a submission assembled from corpus resources"

DECISIONS: dict[str, str] = {
    **dict.fromkeys(NOT_SUBMISSIONS, REFUSED),  # not a Bundle: 400 at POST /fhir
    **dict.fromkeys(NOT_TRANSACTIONS, REFUSED),  # a Bundle, not a transaction: 422
    SIMPLE: WARNED,  # attachment.hash is base64 of the hex SHA-1 string
    MULTIPLE: REFUSED,  # two documents share one masterIdentifier (422)
    ADD_TO_FOLDER: REFUSED,  # folders are not kept (422)
    IHE_WITH_BINARY: ASSEMBLED,  # with its Binary/ex-b-binary, by RESTful fullUrls
    IHE_PATCH: ASSEMBLED,  # as the PATCH entry that supersedes a document
    ANS_REPLACE: REFUSED,  # attachment.hash is the SHA-1 of "hello", the content "Hello"
    ANS_CRBIO_DRAFT: REFUSED,  # no masterIdentifier; then replaces within the submission
    ANS_PDSM_DRAFT: REFUSED,  # Practitioner and Organization entries; no masterIdentifier
    ANS_SIMPLIFIED: REFUSED,  # attachment.size 250000 and the SHA-1 of nothing, for 11 bytes
    ANS_DOC_OLD: REFUSED,  # ITI-105 needs attachment.data; it is the replace bundle's target
    ANS_DOCUMENT: REFUSED,  # ITI-105 needs attachment.data; assembled: placeholder size/hash
    ANS_BINARY: ASSEMBLED,  # the content of doc-old and of exemple-pdsm-documentreference
    ANS_SUBMISSION_SET: ASSEMBLED,  # the SubmissionSet of exemple-pdsm-documentreference
    ANS_FOLDER: REFUSED,  # folders are not kept (422)
    ANS_PATIENT: REFUSED,  # no INS (422)
    HL7_JPEG: ASSEMBLED,  # a Binary entry of an ITI-65 submission
    # Both also refused at POST /fhir, being collections (NOT_TRANSACTIONS):
    HL7_REPORT_WITH_PDF: ASSEMBLED,  # its presentedForm PDF, published by ITI-105
    HL7_LIPIDS: ASSEMBLED,  # entries of a FHIR document sent as content
    HL7_COMPOSITION: ASSEMBLED,  # the Composition of that FHIR document
    HL7_TRANSACTION: REFUSED,  # not an MHD submission (422)
    HL7_XDS: REFUSED,  # pre-MHD: Practitioner entries, no SubmissionSet (422)
    HL7_DOCUMENT_REFERENCE: REFUSED,  # ITI-105 needs attachment.data (422)
    HL7_PATIENT: REFUSED,  # no INS (422)
    SYNTHEA: REFUSED,  # not an MHD submission (422)
}


def test_every_corpus_example_has_a_decided_outcome(corpus: Path) -> None:
    examples = {str(path.relative_to(corpus)) for path in corpus.glob("*/*.json")}
    assert examples == set(DECISIONS)


# -- helpers --------------------------------------------------------------------------------


def post_transaction(client: Any, body: str | dict[str, Any], headers: dict[str, str]) -> Any:
    content = body if isinstance(body, str) else json.dumps(body)
    return client.post("/fhir", content=content, headers=headers)


def sent_contents(bundle: dict[str, Any]) -> list[bytes]:
    """The bytes each DocumentReference of a sent transaction carries, inline or by Binary."""
    contents = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Binary":
            contents.append(base64.b64decode(resource["data"]))
        elif resource["resourceType"] == "DocumentReference":
            data = resource["content"][0]["attachment"].get("data")
            if data is not None:
                contents.append(base64.b64decode(data))
    return contents


def assert_read_back_byte_identical(
    client: Any, headers: dict[str, str], bundle: dict[str, Any], response: Any
) -> None:
    entries = response_entries(response)
    read = []
    for sent, answered in zip(bundle["entry"], entries, strict=True):
        kind = sent["resource"]["resourceType"]
        if kind == "DocumentReference":
            content = document_content(client, headers, answered["location"])
            assert content.status_code == 200
            read.append(content.content)
        if kind == "Binary":
            content = download(client, headers, answered["location"])
            assert content.content == base64.b64decode(sent["resource"]["data"])
            assert content.headers["content-length"] == str(len(content.content))
    assert sorted(read) == sorted(sent_contents(bundle))


def fr_patient_123(client: Any, tokens: Any, corpus: Path, ins_value: str = ANS_PATIENT_INS) -> str:
    """fr-patient-123 on this vault: the ANS Patient, given the INS that the replace
    example's sourcePatientInfo carries (the published Patient has none)."""
    patient = corpus_json(corpus, ANS_PATIENT)
    patient["identifier"] = [{"system": INS_SYSTEM, "value": ins_value}]
    response = client.post("/fhir/Patient", json=patient, headers=tokens.patient(ins_value))
    assert response.status_code == 201, response.text
    return str(response.headers["Location"].split("/Patient/")[1].split("/")[0])


def publish_doc_old(client: Any, tokens: Any, corpus: Path, patient_id: str) -> str:
    """doc-old as it was before the replace example superseded it: current, its content
    the ANS Binary-6789 it points at, inline (ITI-105). Its size and hash are placeholders
    (345678 bytes, the SHA-1 of nothing) that no content could match, so they are left out."""
    document = corpus_json(
        corpus, ANS_DOC_OLD, **{"Patient/fr-patient-123": f"Patient/{patient_id}"}
    )
    document["status"] = "current"
    attachment = document["content"][0]["attachment"]
    for placeholder in ("url", "size", "hash"):
        del attachment[placeholder]
    attachment["data"] = corpus_json(corpus, ANS_BINARY)["data"]
    response = client.post("/fhir/DocumentReference", json=document, headers=tokens.professional())
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def sha1(content: bytes) -> str:
    return base64.b64encode(hashlib.sha1(content, usedforsecurity=False).digest()).decode()


# -- IHE MHD ----------------------------------------------------------------------------


def test_mhd_simple_bundle_is_accepted_with_a_warning_for_its_hex_sha1_hash(
    client, tokens, corpus
) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    body = corpus_text(corpus, SIMPLE, **{"Patient/ex-patient": f"Patient/{patient_id}"})
    response = post_transaction(client, body, tokens.professional())

    assert response.status_code == 200, response.text
    entries = response_entries(response)
    assert [entry["status"] for entry in entries] == ["201 Created"] * 3
    assert entries[0]["location"].startswith("List/")
    assert any("hex SHA-1" in warning for warning in warnings_of(entries[1]))
    owner = tokens.patient(ins_value)
    assert_read_back_byte_identical(client, owner, json.loads(body), response)
    assert (
        download(client, owner, entries[2]["location"])
        .headers["content-type"]
        .startswith("text/plain")
    )


def test_mhd_simple_bundle_sent_again_returns_what_was_stored(client, tokens, corpus) -> None:
    patient_id, _ = create_patient(client, tokens)
    body = corpus_text(corpus, SIMPLE, **{"Patient/ex-patient": f"Patient/{patient_id}"})
    first = response_entries(post_transaction(client, body, tokens.professional()))
    again = post_transaction(client, body, tokens.professional())

    assert again.status_code == 200, again.text
    retried = response_entries(again)
    assert [entry["status"] for entry in retried] == ["200 OK"] * 3
    assert [entry["location"] for entry in retried] == [entry["location"] for entry in first]


def test_mhd_multiple_bundle_is_refused_whole_as_its_documents_share_a_master_identifier(
    client, tokens, corpus, services
) -> None:
    patient_id, _ = create_patient(client, tokens)
    body = corpus_text(corpus, MULTIPLE, **{"Patient/ex-patient": f"Patient/{patient_id}"})
    before = snapshot(services)
    response = post_transaction(client, body, tokens.professional())
    assert_refused(
        services,
        before,
        response,
        422,
        says="share one masterIdentifier",
        where="Bundle.entry[2].resource.masterIdentifier",
    )


def test_mhd_multiple_bundle_with_distinct_master_identifiers_stores_both_documents(
    client, tokens, corpus
) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    bundle = corpus_json(corpus, MULTIPLE, **{"Patient/ex-patient": f"Patient/{patient_id}"})
    bundle["entry"][2]["resource"]["masterIdentifier"]["value"] += ".2"
    response = post_transaction(client, bundle, tokens.professional())

    assert response.status_code == 200, response.text
    assert [entry["status"] for entry in response_entries(response)] == ["201 Created"] * 5
    assert_read_back_byte_identical(client, tokens.patient(ins_value), bundle, response)


def test_mhd_add_to_folder_bundle_is_refused_as_folders_are_not_kept(
    client, tokens, corpus, services
) -> None:
    patient_id, _ = create_patient(client, tokens)
    body = corpus_text(corpus, ADD_TO_FOLDER, **{"Patient/ex-patient": f"Patient/{patient_id}"})
    before = snapshot(services)
    response = post_transaction(client, body, tokens.professional())
    assert_refused(
        services, before, response, 422, says="Folders are not supported", where="Bundle.entry[2]"
    )


def test_mhd_document_reference_and_its_binary_are_resolved_by_restful_full_urls(
    client, tokens, corpus
) -> None:
    """The standalone IHE DocumentReference points at ``Binary/ex-b-binary``; sent with
    that Binary (the "Hello World" of the IHE examples) under RESTful fullUrls, FHIR's
    in-Bundle resolution finds it, and the SubmissionSet's relative reference finds it."""
    patient_id, ins_value = create_patient(client, tokens)
    base = "http://example.org/fhir/"
    document = corpus_json(
        corpus, IHE_WITH_BINARY, **{"Patient/ex-patient": f"Patient/{patient_id}"}
    )
    simple = corpus_json(corpus, SIMPLE, **{"Patient/ex-patient": f"Patient/{patient_id}"})
    submission_set = simple["entry"][0]["resource"]
    submission_set["entry"] = [{"item": {"reference": f"DocumentReference/{document['id']}"}}]
    binary = simple["entry"][2]["resource"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"{base}List/{submission_set['id']}",
                "resource": submission_set,
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": f"{base}DocumentReference/{document['id']}",
                "resource": document,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": f"{base}Binary/ex-b-binary",
                "resource": binary,
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }
    response = post_transaction(client, bundle, tokens.professional())

    assert response.status_code == 200, response.text
    entries = response_entries(response)
    assert any("hex SHA-1" in warning for warning in warnings_of(entries[1]))
    assert_read_back_byte_identical(client, tokens.patient(ins_value), bundle, response)


def test_mhd_patch_parameters_supersede_a_stored_document_within_a_submission(
    client, tokens, corpus
) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    old = client.post(
        "/fhir/DocumentReference",
        json=document_reference({"reference": f"Patient/{patient_id}"}, b"%PDF-1.7 v1"),
        headers=tokens.professional(),
    ).json()
    bundle = provide_bundle(
        {"reference": f"Patient/{patient_id}"}, [(b"%PDF-1.7 v2", "application/pdf")]
    )
    bundle["entry"].append(
        {
            "fullUrl": "urn:uuid:8a1f0e52-7d86-4b7e-9a61-3b0f5f7c1d21",
            "resource": corpus_json(corpus, IHE_PATCH),
            "request": {"method": "PATCH", "url": f"DocumentReference/{old['id']}"},
        }
    )
    response = post_transaction(client, bundle, tokens.professional())

    assert response.status_code == 200, response.text
    assert response_entries(response)[-1]["status"] == "200 OK"
    owner = {k: v for k, v in tokens.patient(ins_value).items() if k != "Content-Type"}
    assert (
        client.get(f"/fhir/DocumentReference/{old['id']}", headers=owner).json()["status"]
        == "superseded"
    )


# -- ANS PDSm ---------------------------------------------------------------------------


def ans_replace_bundle(corpus: Path, patient_id: str, old_id: str) -> dict[str, Any]:
    return corpus_json(
        corpus,
        ANS_REPLACE,
        **{
            "Patient/fr-patient-123": f"Patient/{patient_id}",
            "DocumentReference/doc-old": f"DocumentReference/{old_id}",
        },
    )


def test_ans_replace_bundle_is_refused_as_its_hash_is_not_that_of_its_content(
    client, tokens, corpus, services
) -> None:
    """Its hash is the SHA-1 of "hello"; the Binary holds "Hello". A store cannot tell that
    from a flipped bit in transit, which is what the hash is there to catch."""
    patient_id = fr_patient_123(client, tokens, corpus)
    old_id = publish_doc_old(client, tokens, corpus, patient_id)
    before = snapshot(services)
    response = post_transaction(
        client, ans_replace_bundle(corpus, patient_id, old_id), tokens.professional()
    )
    assert_refused(
        services,
        before,
        response,
        422,
        says="hash (SHA-1) does not match",
        where="Bundle.entry[1].resource.content[0].attachment.hash",
    )


def test_ans_replace_bundle_with_the_right_hash_supersedes_the_old_document(
    client, tokens, corpus
) -> None:
    patient_id = fr_patient_123(client, tokens, corpus)
    old_id = publish_doc_old(client, tokens, corpus, patient_id)
    bundle = ans_replace_bundle(corpus, patient_id, old_id)
    bundle["entry"][1]["resource"]["content"][0]["attachment"]["hash"] = sha1(b"Hello")
    response = post_transaction(client, bundle, tokens.professional())

    assert response.status_code == 200, response.text
    entries = response_entries(response)
    assert [entry["status"] for entry in entries] == [
        "201 Created",
        "201 Created",
        "200 OK",
        "201 Created",
    ]
    assert any("not a PDF" in warning for warning in warnings_of(entries[1]))
    owner = tokens.patient(ANS_PATIENT_INS)
    plain = {k: v for k, v in owner.items() if k != "Content-Type"}
    assert (
        client.get(f"/fhir/DocumentReference/{old_id}", headers=plain).json()["status"]
        == "superseded"
    )
    new = client.get(f"/fhir/{entries[1]['location'].split('/_history')[0]}", headers=plain)
    assert new.json()["relatesTo"][0]["target"] == {"reference": f"DocumentReference/{old_id}"}
    assert_read_back_byte_identical(client, owner, bundle, response)


def test_ans_replace_bundle_is_refused_when_source_patient_info_is_someone_else(
    client, tokens, corpus, services
) -> None:
    """fr-patient-123 opened here under another INS than the one the submission's
    sourcePatientInfo carries: the sender has mixed up two people."""
    patient_id = fr_patient_123(client, tokens, corpus, ins_value="279035121518989")
    bundle = ans_replace_bundle(corpus, patient_id, "unused")
    attachment = bundle["entry"][1]["resource"]["content"][0]["attachment"]
    attachment["hash"] = sha1(b"Hello")
    del bundle["entry"][1]["resource"]["relatesTo"]
    del bundle["entry"][2]
    before = snapshot(services)
    response = post_transaction(client, bundle, tokens.professional())
    assert_refused(
        services,
        before,
        response,
        422,
        says="sourcePatientInfo",
        where="Bundle.entry[1].resource.context.sourcePatientInfo",
    )


def test_ans_doc_old_standalone_is_refused_by_simplified_publish_without_inline_data(
    client, tokens, corpus, services
) -> None:
    patient_id = fr_patient_123(client, tokens, corpus)
    for name in (ANS_DOC_OLD, ANS_DOCUMENT):
        body = corpus_text(corpus, name, **{"Patient/fr-patient-123": f"Patient/{patient_id}"})
        before = snapshot(services)
        response = client.post(
            "/fhir/DocumentReference", content=body, headers=tokens.professional()
        )
        assert_refused(
            services,
            before,
            response,
            422,
            says="attachment.data",
            where="DocumentReference.content[0].attachment.data",
        )


def test_ans_simplified_publish_example_is_refused_for_its_placeholder_size(
    client, tokens, corpus, services
) -> None:
    patient_id = fr_patient_123(client, tokens, corpus)
    body = corpus_text(
        corpus, ANS_SIMPLIFIED, **{"Patient/fr-patient-123": f"Patient/{patient_id}"}
    )
    before = snapshot(services)
    response = client.post("/fhir/DocumentReference", content=body, headers=tokens.professional())
    assert_refused(
        services,
        before,
        response,
        422,
        says="size does not match",
        where="DocumentReference.content[0].attachment.size",
    )


def test_ans_simplified_publish_example_without_placeholders_is_stored_with_a_warning(
    client, tokens, corpus
) -> None:
    patient_id = fr_patient_123(client, tokens, corpus)
    document = corpus_json(
        corpus, ANS_SIMPLIFIED, **{"Patient/fr-patient-123": f"Patient/{patient_id}"}
    )
    attachment = document["content"][0]["attachment"]
    del attachment["size"], attachment["hash"]
    headers = {**tokens.professional(), "Prefer": "return=OperationOutcome"}
    response = client.post("/fhir/DocumentReference", json=document, headers=headers)

    assert response.status_code == 201, response.text
    warnings = [found["diagnostics"] for found in response.json()["issue"]]
    assert any("not a PDF" in warning for warning in warnings)
    location = response.headers["Location"].split("/fhir/")[1]
    content = document_content(client, tokens.patient(ANS_PATIENT_INS), location)
    assert content.content == base64.b64decode(attachment["data"]) == b"Hello World"
    assert content.headers["content-type"] == "application/pdf"


def ans_assembled_bundle(corpus: Path, patient_id: str) -> dict[str, Any]:
    """The ANS SubmissionSet, DocumentReference and Binary examples -- published
    separately, pointing at each other by relative references -- sent together under
    RESTful fullUrls, so FHIR's in-Bundle resolution joins them."""
    base = "https://interop.esante.gouv.fr/ig/fhir/pdsm/"
    replace = {"Patient/fr-patient-123": f"Patient/{patient_id}"}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"{base}List/ExampleSubmissionSet",
                "resource": corpus_json(corpus, ANS_SUBMISSION_SET, **replace),
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": f"{base}DocumentReference/exemple-pdsm-documentreference",
                "resource": corpus_json(corpus, ANS_DOCUMENT, **replace),
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": f"{base}Binary/6789",
                "resource": corpus_json(corpus, ANS_BINARY),
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }


def test_ans_examples_assembled_are_refused_for_the_placeholder_size_of_the_document(
    client, tokens, corpus, services
) -> None:
    patient_id = fr_patient_123(client, tokens, corpus)
    before = snapshot(services)
    response = post_transaction(
        client, ans_assembled_bundle(corpus, patient_id), tokens.professional()
    )
    assert_refused(
        services,
        before,
        response,
        422,
        says="size does not match",
        where="Bundle.entry[1].resource.content[0].attachment.size",
    )


def test_ans_examples_assembled_without_placeholders_are_stored_and_the_list_kept(
    client, tokens, corpus
) -> None:
    patient_id = fr_patient_123(client, tokens, corpus)
    bundle = ans_assembled_bundle(corpus, patient_id)
    attachment = bundle["entry"][1]["resource"]["content"][0]["attachment"]
    del attachment["size"], attachment["hash"]
    response = post_transaction(client, bundle, tokens.professional())

    assert response.status_code == 200, response.text
    entries = response_entries(response)
    owner = tokens.patient(ANS_PATIENT_INS)
    assert_read_back_byte_identical(client, owner, bundle, response)
    plain = {k: v for k, v in owner.items() if k != "Content-Type"}
    kept = client.get(f"/fhir/{entries[0]['location']}", headers=plain)
    assert kept.status_code == 200, kept.text
    assert kept.json()["title"] == "Dossier de suivi post-opératoire"
    document_id = entries[1]["location"].split("/")[1]
    assert kept.json()["entry"] == [{"item": {"reference": f"DocumentReference/{document_id}"}}]


def test_ans_folder_in_a_submission_is_refused(client, tokens, corpus, services) -> None:
    patient_id = fr_patient_123(client, tokens, corpus)
    bundle = ans_assembled_bundle(corpus, patient_id)
    bundle["entry"].append(
        {
            "fullUrl": "https://interop.esante.gouv.fr/ig/fhir/pdsm/List/ExampleFolder",
            "resource": corpus_json(corpus, ANS_FOLDER),
            "request": {"method": "POST", "url": "List"},
        }
    )
    before = snapshot(services)
    response = post_transaction(client, bundle, tokens.professional())
    assert_refused(services, before, response, 422, says="Folders", where="Bundle.entry[3]")


def test_ans_crbio_draft_is_refused_as_its_submission_set_omits_a_document(
    client, tokens, corpus, services
) -> None:
    before = snapshot(services)
    response = post_transaction(client, corpus_text(corpus, ANS_CRBIO_DRAFT), tokens.professional())
    # Nothing is written: not even the Patient entry that precedes the faulty document.
    assert_refused(
        services, before, response, 422, says="every DocumentReference", where="Bundle.entry[3]"
    )


def crbio_listing_both_documents(corpus: Path) -> dict[str, Any]:
    bundle = corpus_json(corpus, ANS_CRBIO_DRAFT)
    bundle["entry"][6]["resource"]["entry"].append(
        {"item": {"reference": bundle["entry"][3]["fullUrl"]}}
    )
    return bundle


def test_ans_crbio_draft_is_refused_for_its_missing_master_identifiers(
    client, tokens, corpus, services
) -> None:
    before = snapshot(services)
    response = post_transaction(client, crbio_listing_both_documents(corpus), tokens.professional())
    assert_refused(
        services,
        before,
        response,
        422,
        says="masterIdentifier",
        where="Bundle.entry[3].resource.masterIdentifier",
    )


def crbio_with_master_identifiers(corpus: Path) -> dict[str, Any]:
    bundle = crbio_listing_both_documents(corpus)
    for index in (3, 4):
        bundle["entry"][index]["resource"]["masterIdentifier"] = {
            "system": "urn:ietf:rfc:3986",
            "value": bundle["entry"][index]["fullUrl"],
        }
    return bundle


def test_ans_crbio_draft_is_refused_as_it_replaces_a_document_of_the_same_submission(
    client, tokens, corpus, services
) -> None:
    before = snapshot(services)
    response = post_transaction(
        client, crbio_with_master_identifiers(corpus), tokens.professional()
    )
    assert_refused(
        services,
        before,
        response,
        422,
        says="already stored",
        where="Bundle.entry[4].resource.relatesTo",
    )


def crbio_as_two_new_documents(corpus: Path) -> dict[str, Any]:
    """The CRBio draft once its faults are fixed: both documents listed, new ones."""
    bundle = crbio_with_master_identifiers(corpus)
    del bundle["entry"][4]["resource"]["relatesTo"]
    del bundle["entry"][5]
    return bundle


def test_ans_crbio_draft_fixed_creates_its_patient_by_urn_uuid_and_both_documents(
    client, tokens, corpus
) -> None:
    bundle = crbio_as_two_new_documents(corpus)
    response = post_transaction(client, bundle, tokens.professional())

    assert response.status_code == 200, response.text
    entries = response_entries(response)
    assert entries[0]["status"] == "201 Created"
    assert entries[0]["location"].startswith("Patient/")
    # 189079912345678 has the INS form but not a valid key: accepted by default.
    assert_read_back_byte_identical(client, tokens.patient("189079912345678"), bundle, response)


def test_ans_pdsm_draft_is_refused_for_its_practitioner_entry_with_a_hint(
    client, tokens, corpus, services
) -> None:
    before = snapshot(services)
    response = post_transaction(client, corpus_text(corpus, ANS_PDSM_DRAFT), tokens.professional())
    found = assert_refused(
        services, before, response, 422, says="MHD Provide Document Bundle", where="Bundle.entry[1]"
    )
    assert "DocumentReference.contained" in found["diagnostics"]


def test_ans_pdsm_draft_with_contained_author_and_master_identifier_is_stored(
    client, tokens, corpus
) -> None:
    bundle = corpus_json(corpus, ANS_PDSM_DRAFT)
    practitioner = bundle["entry"][1]["resource"]
    organization = bundle["entry"][2]["resource"]
    document = bundle["entry"][4]["resource"]
    document["contained"] = [practitioner, organization]
    document["author"] = [{"reference": "#practitioner-1"}]
    document["custodian"] = {"reference": "#organization-1"}
    document["masterIdentifier"] = {
        "system": "urn:ietf:rfc:3986",
        "value": "urn:uuid:0f3e6f4b-3f0e-4c47-9d0b-3c4b8d2e9a11",
    }
    del bundle["entry"][1:3]
    response = post_transaction(client, bundle, tokens.professional())

    assert response.status_code == 200, response.text
    entries = response_entries(response)
    assert any("not a PDF" in warning for warning in warnings_of(entries[2]))
    assert_read_back_byte_identical(client, tokens.patient("189079912345678"), bundle, response)


@pytest.mark.parametrize("name", [ANS_PATIENT, HL7_PATIENT])
def test_patients_without_an_ins_are_refused(client, tokens, corpus, services, name) -> None:
    before = snapshot(services)
    response = client.post(
        "/fhir/Patient", content=corpus_text(corpus, name), headers=tokens.professional()
    )
    assert_refused(services, before, response, 422, says="INS", where="Patient.identifier")


# -- HL7 FHIR R4 and Synthea ------------------------------------------------------------


def test_hl7_jpeg_binary_is_stored_as_the_content_of_a_submission(client, tokens, corpus) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    binary = corpus_json(corpus, HL7_JPEG)
    jpeg = base64.b64decode(binary["data"])
    bundle = provide_bundle({"reference": f"Patient/{patient_id}"}, [(jpeg, "image/jpeg")])
    bundle["entry"][2]["resource"] = binary
    response = post_transaction(client, bundle, tokens.professional())

    assert response.status_code == 200, response.text
    entries = response_entries(response)
    assert all(not warnings_of(entry) for entry in entries)
    owner = tokens.patient(ins_value)
    assert_read_back_byte_identical(client, owner, bundle, response)
    assert download(client, owner, entries[2]["location"]).headers["content-type"] == "image/jpeg"


def test_hl7_report_pdf_is_published_by_simplified_publish_without_warning(
    client, tokens, corpus
) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    report = corpus_json(corpus, HL7_REPORT_WITH_PDF)["entry"][0]["resource"]
    pdf = base64.b64decode(report["presentedForm"][0]["data"])
    document = document_reference({"reference": f"Patient/{patient_id}"}, pdf)
    headers = {**tokens.professional(), "Prefer": "return=OperationOutcome"}
    response = client.post("/fhir/DocumentReference", json=document, headers=headers)

    assert response.status_code == 201, response.text
    assert response.json()["resourceType"] == "DocumentReference"
    location = response.headers["Location"].split("/fhir/")[1]
    assert document_content(client, tokens.patient(ins_value), location).content == pdf


def lab_report_document(corpus: Path) -> dict[str, Any]:
    """A FHIR document: the HL7 Composition example, then the lipid panel's resources."""
    lipids = corpus_json(corpus, HL7_LIPIDS)
    return {
        "resourceType": "Bundle",
        "identifier": {
            "system": "urn:ietf:rfc:3986",
            "value": "urn:uuid:2d6a5f0e-8a35-4a4e-9b5c-7f1e0c3d4b21",
        },
        "type": "document",
        "timestamp": "2026-11-20T10:00:00+01:00",
        "entry": [
            {
                "fullUrl": "https://example.com/base/Composition/example",
                "resource": corpus_json(corpus, HL7_COMPOSITION),
            },
            *lipids["entry"],
        ],
    }


def test_fhir_document_bundle_as_content_is_validated_and_read_back_byte_identical(
    client, tokens, corpus
) -> None:
    patient_id, ins_value = create_patient(client, tokens)
    # Indented on purpose: the bytes are kept as sent, not re-serialised.
    content = json.dumps(lab_report_document(corpus), indent=2).encode()
    document = document_reference(
        {"reference": f"Patient/{patient_id}"}, content, content_type="application/fhir+json"
    )
    response = client.post("/fhir/DocumentReference", json=document, headers=tokens.professional())

    assert response.status_code == 201, response.text
    location = response.headers["Location"].split("/fhir/")[1]
    read = document_content(client, tokens.patient(ins_value), location)
    assert read.content == content
    assert read.headers["content-type"] == "application/fhir+json"


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda corpus: corpus_json(corpus, HL7_LIPIDS), "Bundle of type document"),
        (lambda corpus: corpus_json(corpus, HL7_COMPOSITION), "Bundle of type document"),
        (
            lambda corpus: {**lab_report_document(corpus), "identifier": None},
            "identifier",
        ),
        (
            lambda corpus: {
                **lab_report_document(corpus),
                "entry": lab_report_document(corpus)["entry"][1:],
            },
            "starts with a Composition",
        ),
    ],
)
def test_fhir_content_that_is_not_a_fhir_document_is_refused(
    client, tokens, corpus, services, build, says
) -> None:
    patient_id, _ = create_patient(client, tokens)
    sent = {key: value for key, value in build(corpus).items() if value is not None}
    document = document_reference(
        {"reference": f"Patient/{patient_id}"},
        json.dumps(sent).encode(),
        content_type="application/fhir+json",
    )
    before = snapshot(services)
    response = client.post("/fhir/DocumentReference", json=document, headers=tokens.professional())
    assert_refused(services, before, response, 422, says=says)


@pytest.mark.parametrize(
    ("name", "where", "says"),
    [
        (HL7_TRANSACTION, "Bundle.entry[2]", "PUT Patient"),
        (HL7_XDS, "Bundle.entry[2]", "DocumentReference.contained"),
        (SYNTHEA, "Bundle.entry[1]", "POST Organization"),
    ],
)
def test_transactions_that_are_not_mhd_submissions_are_refused_clearly(
    client, tokens, corpus, services, name, where, says
) -> None:
    before = snapshot(services)
    response = post_transaction(client, corpus_text(corpus, name), tokens.professional())
    found = assert_refused(services, before, response, 422, says=says, where=where)
    assert "MHD Provide Document Bundle" in found["diagnostics"]


def test_hl7_document_reference_is_refused_by_simplified_publish_without_inline_data(
    client, tokens, corpus, services
) -> None:
    patient_id, _ = create_patient(client, tokens)
    body = corpus_text(corpus, HL7_DOCUMENT_REFERENCE, **{"Patient/xcda": f"Patient/{patient_id}"})
    before = snapshot(services)
    response = client.post("/fhir/DocumentReference", content=body, headers=tokens.professional())
    assert_refused(services, before, response, 422, says="attachment.data")


@pytest.mark.parametrize("name", NOT_TRANSACTIONS)
def test_bundles_that_are_not_transactions_are_refused_at_the_transaction_endpoint(
    client, tokens, corpus, services, name
) -> None:
    before = snapshot(services)
    response = post_transaction(client, corpus_text(corpus, name), tokens.professional())
    assert_refused(services, before, response, 422, says="type transaction", where="Bundle.type")


@pytest.mark.parametrize("name", NOT_SUBMISSIONS)
def test_resources_that_are_not_submissions_are_a_bad_request(
    client, tokens, corpus, services, name
) -> None:
    before = snapshot(services)
    for url, expected in (("/fhir", "Bundle"), ("/fhir/DocumentReference", "DocumentReference")):
        response = client.post(
            url, content=corpus_text(corpus, name), headers=tokens.professional()
        )
        assert response.status_code == 400, response.text
        assert f"Expected {expected}" in issue(response)["diagnostics"]
    after = snapshot(services)
    assert after["documents"] == before["documents"] == 0
    assert after["audit_entries"] == before["audit_entries"] + 2


def test_no_corpus_example_is_copied_into_the_project(corpus: Path) -> None:
    """The tests read the examples where they lie, ../shared/corpus."""
    project = Path(__file__).resolve().parents[2]
    names = {path.name for path in corpus.glob("*/*.json")}
    copies = [
        path
        for tree in ("tests", "vault", "docs", "scripts")
        for path in (project / tree).rglob("*.json")
        if path.name in names
    ]
    assert copies == []
