"""A corpus of hostile FHIR input, sent over HTTP as a client would: each case gets a 4xx
OperationOutcome that shows no internals, and nothing is stored (no patient, key,
document, version, binary, blob chunk or submission set).

Cases already covered one by one elsewhere (tests/documents/test_ingest_bad_input.py) are
kept to a representative here; what this corpus adds is breadth: nesting, size, types,
Unicode, references to other people, compression."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import (
    INS_SYSTEM,
    create_patient,
    document_reference,
    ins,
    patient_resource,
    provide_bundle,
    publish,
)
from tests.hardening.support import assert_outcome, row_counts
from vault.api.app import create_app

SMALL_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Context:
    patient_id: str
    ins: str
    other_id: str
    other_ins: str
    # A document of patient_id's record, published by the professional of the cases.
    document_id: str


Body = Callable[[Context], bytes]


@dataclass(frozen=True)
class Hostile:
    name: str
    url: str
    body: Body
    status: int
    role: str = "professional"
    headers: tuple[tuple[str, str], ...] = ()
    small_limit: bool = False
    chunked: bool = False
    # "{document}" in url stands for Context.document_id.
    method: str = "POST"


# -- builders -----------------------------------------------------------------------------


def dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def doc(ctx: Context, **changes: Any) -> dict[str, Any]:
    resource = document_reference({"reference": f"Patient/{ctx.patient_id}"})
    resource.update(changes)
    return resource


def with_doc(**changes: Any) -> Body:
    return lambda ctx: dumps(doc(ctx, **changes))


def with_attachment(**changes: Any) -> Body:
    def build(ctx: Context) -> bytes:
        resource = doc(ctx)
        resource["content"][0]["attachment"].update(changes)
        for key in [key for key, value in changes.items() if value is None]:
            del resource["content"][0]["attachment"][key]
        return dumps(resource)

    return build


def raw_doc(fragment: str) -> Body:
    """A DocumentReference as JSON text, with ``fragment`` spliced in as its last
    member: for what json.dumps would never write."""

    def build(ctx: Context) -> bytes:
        text = json.dumps(doc(ctx))
        return (text[:-1] + ", " + fragment + "}").encode("utf-8", "surrogatepass")

    return build


def raw_bytes_doc(fragment: bytes) -> Body:
    def build(ctx: Context) -> bytes:
        text = json.dumps(doc(ctx)).encode()
        return text[:-1] + b', "description": "' + fragment + b'"}'

    return build


def bundle(ctx: Context, subject: str | None = None, count: int = 1) -> dict[str, Any]:
    return provide_bundle(
        {"reference": subject or f"Patient/{ctx.patient_id}"},
        [(f"%PDF-1.7 {n}".encode(), "application/pdf") for n in range(count)],
    )


def with_bundle(change: Callable[[Context, dict[str, Any]], Any], count: int = 1) -> Body:
    def build(ctx: Context) -> bytes:
        document = bundle(ctx, count=count)
        change(ctx, document)
        return dumps(document)

    return build


def patient(change: Callable[[Context, dict[str, Any]], Any]) -> Body:
    def build(ctx: Context) -> bytes:
        resource = patient_resource(ins(77))
        change(ctx, resource)
        return dumps(resource)

    return build


def set_ins(value: str) -> Callable[[Context, dict[str, Any]], Any]:
    return lambda _ctx, resource: resource["identifier"][0].update(value=value)


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(depth):
        node = {"url": "http://example.org/x", "extension": [node]}
    return node


def deflate(payload: bytes) -> bytes:
    return zlib.compress(payload, 9)


def bomb(ctx: Context) -> bytes:
    resource = doc(ctx, description="A" * (SMALL_LIMIT * 64))
    return gzip.compress(dumps(resource), 9)


def other_patient_in_submission_set(ctx: Context, document: dict[str, Any]) -> None:
    document["entry"][0]["resource"]["subject"] = {"reference": f"Patient/{ctx.other_id}"}


def other_patient_in_second_document(ctx: Context, document: dict[str, Any]) -> None:
    document["entry"][3]["resource"]["subject"] = {"reference": f"Patient/{ctx.other_id}"}


def patient_entry_of_someone_else(ctx: Context, document: dict[str, Any]) -> None:
    url = f"urn:uuid:{uuid.uuid4()}"
    document["entry"].append(
        {
            "fullUrl": url,
            "resource": patient_resource(ctx.other_ins),
            "request": {"method": "POST", "url": "Patient"},
        }
    )


def reference_and_ins_disagree(ctx: Context) -> bytes:
    subject = {
        "reference": f"Patient/{ctx.patient_id}",
        "identifier": {"system": INS_SYSTEM, "value": ctx.other_ins},
    }
    return dumps(document_reference(subject))


def source_patient_info_of_someone_else(ctx: Context) -> bytes:
    resource = doc(ctx)
    resource["contained"] = [{**patient_resource(ctx.other_ins), "id": "src"}]
    resource["context"] = {"sourcePatientInfo": {"reference": "#src"}}
    return dumps(resource)


def conditional_reference_to_other(ctx: Context) -> bytes:
    return dumps(
        document_reference({"reference": f"Patient?identifier={INS_SYSTEM}|{ctx.other_ins}"})
    )


def duplicate_full_urls(_ctx: Context, document: dict[str, Any]) -> None:
    document["entry"][3]["fullUrl"] = document["entry"][1]["fullUrl"]


def document_and_binary_share_full_url(_ctx: Context, document: dict[str, Any]) -> None:
    document["entry"][2]["fullUrl"] = document["entry"][1]["fullUrl"]


def binary_data(value: Any) -> Callable[[Context, dict[str, Any]], Any]:
    return lambda _ctx, document: document["entry"][2]["resource"].update(data=value)


def entry_field(index: int, **values: Any) -> Callable[[Context, dict[str, Any]], Any]:
    return lambda _ctx, document: document["entry"][index].update(values)


def submission_set_code(value: Any) -> Callable[[Context, dict[str, Any]], Any]:
    return lambda _ctx, document: document["entry"][0]["resource"].update(code=value)


HUGE = 200_000

CORPUS = [
    # -- nesting
    Hostile(
        "nested-extensions-past-the-bound",
        "/fhir/DocumentReference",
        with_doc(extension=[nested(100)]),
        400,
    ),
    Hostile(
        "array-recursion-bomb",
        "/fhir/DocumentReference",
        lambda _ctx: (
            b'{"resourceType": "DocumentReference", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        ),
        400,
    ),
    Hostile(
        "nested-bundle-past-the-bound",
        "/fhir",
        with_bundle(lambda _ctx, b: b["entry"][1]["resource"].update(extension=[nested(80)])),
        400,
    ),
    # -- huge values
    Hostile(
        "huge-master-identifier",
        "/fhir/DocumentReference",
        with_doc(masterIdentifier={"system": "urn:ietf:rfc:3986", "value": "urn:x:" + "9" * HUGE}),
        422,
    ),
    Hostile(
        "huge-type-code",
        "/fhir/DocumentReference",
        with_doc(type={"coding": [{"system": "http://loinc.org", "code": "1" * HUGE}]}),
        422,
    ),
    Hostile(
        "huge-security-label",
        "/fhir/DocumentReference",
        with_doc(securityLabel=[{"coding": [{"code": "R" * HUGE}]}]),
        422,
    ),
    Hostile("huge-ins", "/fhir/Patient", patient(set_ins("1" * HUGE)), 422, role="patient"),
    Hostile("huge-integer", "/fhir/DocumentReference", raw_doc('"x": ' + "1" * 5000), 400),
    Hostile("float-overflowing-to-infinity", "/fhir/DocumentReference", raw_doc('"x": 1e999'), 400),
    Hostile("huge-size", "/fhir/DocumentReference", with_attachment(size=10**40), 422),
    Hostile(
        "huge-string-past-the-limit",
        "/fhir/DocumentReference",
        with_doc(description="x" * (SMALL_LIMIT * 2)),
        413,
        small_limit=True,
    ),
    # -- invalid base64
    Hostile(
        "base64-outside-the-alphabet",
        "/fhir/DocumentReference",
        with_attachment(data="!!!!", size=None, hash=None),
        422,
    ),
    Hostile(
        "base64-without-padding",
        "/fhir/DocumentReference",
        with_attachment(data="JVBERi0", size=None, hash=None),
        422,
    ),
    Hostile(
        "base64-padding-in-the-middle",
        "/fhir/DocumentReference",
        with_attachment(data="YQ==YQ==", size=None, hash=None),
        422,
    ),
    Hostile(
        "base64-space-inside-a-group",
        "/fhir/DocumentReference",
        with_attachment(data="YW Jj", size=None, hash=None),
        422,
    ),
    Hostile(
        "base64-fullwidth-letters",
        "/fhir/DocumentReference",
        with_attachment(data="\uff2a\uff36\uff22\uff25", size=None, hash=None),
        422,
    ),
    Hostile(
        "base64-empty",
        "/fhir/DocumentReference",
        with_attachment(data="", size=None, hash=None),
        422,
    ),
    Hostile(
        "base64-a-number",
        "/fhir/DocumentReference",
        with_attachment(data=12345678, size=None, hash=None),
        422,
    ),
    Hostile(
        "base64-invalid-in-a-binary-entry",
        "/fhir",
        with_bundle(binary_data("%PDF not base64")),
        422,
    ),
    Hostile("base64-a-list-in-a-binary-entry", "/fhir", with_bundle(binary_data(["JVBE"])), 422),
    # -- wrong types
    Hostile(
        "resource-type-a-number",
        "/fhir/DocumentReference",
        lambda _ctx: b'{"resourceType": 7}',
        400,
    ),
    Hostile("body-an-array", "/fhir", lambda _ctx: b'[{"resourceType": "Bundle"}]', 400),
    Hostile("status-a-number", "/fhir/DocumentReference", with_doc(status=1), 422),
    Hostile(
        "subject-a-string",
        "/fhir/DocumentReference",
        lambda ctx: dumps(doc(ctx, subject=f"Patient/{ctx.patient_id}")),
        422,
    ),
    Hostile(
        "content-an-object",
        "/fhir/DocumentReference",
        lambda ctx: dumps(doc(ctx, content=doc(ctx)["content"][0])),
        422,
    ),
    Hostile(
        "master-identifier-a-list",
        "/fhir/DocumentReference",
        with_doc(masterIdentifier=[{"value": "urn:x:1"}]),
        422,
    ),
    Hostile("size-a-string", "/fhir/DocumentReference", with_attachment(size="19"), 422),
    Hostile("size-a-boolean", "/fhir/DocumentReference", with_attachment(size=True), 422),
    Hostile("date-a-number", "/fhir/DocumentReference", with_doc(date=20261120), 422),
    Hostile("author-a-string", "/fhir/DocumentReference", with_doc(author="Dr House"), 422),
    Hostile("security-label-a-string", "/fhir/DocumentReference", with_doc(securityLabel="R"), 422),
    Hostile(
        "bundle-entry-an-object",
        "/fhir",
        with_bundle(lambda _ctx, b: b.update(entry=b["entry"][0])),
        422,
    ),
    Hostile(
        "bundle-entry-a-string",
        "/fhir",
        with_bundle(lambda _ctx, b: b["entry"].append("entry")),
        422,
    ),
    Hostile(
        "bundle-type-a-list",
        "/fhir",
        with_bundle(lambda _ctx, b: b.update(type=["transaction"])),
        422,
    ),
    Hostile(
        "request-method-a-number",
        "/fhir",
        with_bundle(entry_field(1, request={"method": 7, "url": "DocumentReference"})),
        422,
    ),
    Hostile(
        "entry-resource-a-list",
        "/fhir",
        with_bundle(entry_field(1, resource=[{"resourceType": "DocumentReference"}])),
        422,
    ),
    Hostile(
        "submission-set-code-a-string",
        "/fhir",
        with_bundle(submission_set_code("submissionset")),
        422,
    ),
    Hostile("submission-set-code-a-boolean", "/fhir", with_bundle(submission_set_code(True)), 422),
    Hostile(
        "resource-type-a-list-in-an-entry",
        "/fhir",
        with_bundle(
            lambda _ctx, b: b["entry"][1]["resource"].update(resourceType=["DocumentReference"])
        ),
        422,
    ),
    Hostile(
        "patient-identifier-an-object",
        "/fhir/Patient",
        patient(lambda _ctx, r: r.update(identifier=r["identifier"][0])),
        422,
        role="patient",
    ),
    # -- duplicate fullUrls
    Hostile("duplicate-full-urls", "/fhir", with_bundle(duplicate_full_urls, count=2), 422),
    Hostile(
        "document-and-binary-share-a-full-url",
        "/fhir",
        with_bundle(document_and_binary_share_full_url),
        422,
    ),
    # -- references to another patient
    Hostile(
        "submission-set-of-another-patient",
        "/fhir",
        with_bundle(other_patient_in_submission_set),
        422,
    ),
    Hostile(
        "second-document-of-another-patient",
        "/fhir",
        with_bundle(other_patient_in_second_document, count=2),
        422,
    ),
    Hostile(
        "patient-entry-of-someone-else", "/fhir", with_bundle(patient_entry_of_someone_else), 422
    ),
    Hostile(
        "reference-and-ins-name-two-people",
        "/fhir/DocumentReference",
        reference_and_ins_disagree,
        422,
    ),
    Hostile(
        "source-patient-info-of-someone-else",
        "/fhir/DocumentReference",
        source_patient_info_of_someone_else,
        422,
    ),
    Hostile(
        "patient-uploads-into-another-record",
        "/fhir/DocumentReference",
        lambda ctx: dumps(document_reference({"reference": f"Patient/{ctx.other_id}"})),
        404,
        role="patient",
    ),
    Hostile(
        "patient-uploads-by-another-ins",
        "/fhir/DocumentReference",
        conditional_reference_to_other,
        404,
        role="patient",
    ),
    Hostile(
        "patient-creates-another-record",
        "/fhir/Patient",
        lambda ctx: dumps(patient_resource(ins(78))),
        404,
        role="patient",
    ),
    # -- Unicode
    Hostile(
        "nul-in-master-identifier",
        "/fhir/DocumentReference",
        with_doc(masterIdentifier={"system": "urn:ietf:rfc:3986", "value": "urn:x:\x00"}),
        400,
    ),
    Hostile(
        "nul-in-type-code",
        "/fhir/DocumentReference",
        with_doc(type={"coding": [{"system": "http://loinc.org", "code": "\x00"}]}),
        400,
    ),
    Hostile(
        "nul-in-ins", "/fhir/Patient", patient(set_ins(ins(77)[:-1] + "\x00")), 422, role="patient"
    ),
    Hostile(
        "lone-high-surrogate", "/fhir/DocumentReference", raw_doc('"description": "\\ud800"'), 400
    ),
    Hostile("lone-low-surrogate-in-a-key", "/fhir/DocumentReference", raw_doc('"\\udfff": 1'), 400),
    Hostile(
        "reversed-surrogate-pair",
        "/fhir/DocumentReference",
        raw_doc('"description": "\\udc00\\ud800"'),
        400,
    ),
    Hostile(
        "right-to-left-override-in-ins",
        "/fhir/Patient",
        patient(set_ins("\u202e" + ins(77))),
        422,
        role="patient",
    ),
    Hostile(
        "right-to-left-override-in-status",
        "/fhir/DocumentReference",
        with_doc(status="\u202ecurrent"),
        422,
    ),
    Hostile(
        "right-to-left-override-in-content-type",
        "/fhir/DocumentReference",
        with_attachment(contentType="application/\u202efdp"),
        422,
    ),
    Hostile(
        "combining-accent-on-status",
        "/fhir/DocumentReference",
        with_doc(status="current\u0301"),
        422,
    ),
    Hostile(
        "combining-accent-in-resource-type",
        "/fhir/DocumentReference",
        lambda ctx: dumps({**doc(ctx), "resourceType": "DocumentReferenc\u0065\u0301"}),
        400,
    ),
    Hostile(
        "combining-mark-in-ins",
        "/fhir/Patient",
        patient(set_ins(ins(77)[:5] + "\u0338" + ins(77)[5:])),
        422,
        role="patient",
    ),
    Hostile(
        "arabic-indic-digits-in-ins",
        "/fhir/Patient",
        patient(set_ins("".join(chr(0x660 + int(d)) for d in ins(77)))),
        422,
        role="patient",
    ),
    Hostile(
        "fullwidth-digits-in-date",
        "/fhir/DocumentReference",
        with_doc(date="\uff12\uff10\uff12\uff16-11-20"),
        422,
    ),
    Hostile("overlong-utf8-slash", "/fhir/DocumentReference", raw_bytes_doc(b"\xc0\xaf"), 400),
    Hostile("overlong-utf8-nul", "/fhir/DocumentReference", raw_bytes_doc(b"\xe0\x80\x80"), 400),
    Hostile(
        "utf8-encoded-surrogate", "/fhir/DocumentReference", raw_bytes_doc(b"\xed\xa0\x80"), 400
    ),
    Hostile(
        "utf8-five-byte-form",
        "/fhir/DocumentReference",
        raw_bytes_doc(b"\xf8\x88\x80\x80\x80"),
        400,
    ),
    Hostile(
        "utf8-past-u10ffff", "/fhir/DocumentReference", raw_bytes_doc(b"\xf4\x90\x80\x80"), 400
    ),
    Hostile(
        "utf16-body",
        "/fhir/DocumentReference",
        lambda ctx: json.dumps(doc(ctx)).encode("utf-16"),
        400,
    ),
    # -- compression
    Hostile(
        "gzip-bomb",
        "/fhir/DocumentReference",
        bomb,
        413,
        headers=(("Content-Encoding", "gzip"),),
        small_limit=True,
    ),
    Hostile(
        "deflate-bomb",
        "/fhir",
        lambda ctx: deflate(dumps({**bundle(ctx), "id": "b" * (SMALL_LIMIT * 64)})),
        413,
        headers=(("Content-Encoding", "deflate"),),
        small_limit=True,
    ),
    Hostile(
        "gzip-inside-gzip",
        "/fhir/DocumentReference",
        lambda ctx: gzip.compress(gzip.compress(dumps(doc(ctx)))),
        400,
        headers=(("Content-Encoding", "gzip"),),
    ),
    Hostile(
        "gzip-declared-twice",
        "/fhir/DocumentReference",
        lambda ctx: gzip.compress(gzip.compress(dumps(doc(ctx)))),
        415,
        headers=(("Content-Encoding", "gzip, gzip"),),
    ),
    Hostile(
        "gzip-declared-plain-sent",
        "/fhir/DocumentReference",
        lambda ctx: dumps(doc(ctx)),
        400,
        headers=(("Content-Encoding", "gzip"),),
    ),
    Hostile(
        "gzip-with-trailing-garbage",
        "/fhir/DocumentReference",
        lambda ctx: gzip.compress(dumps(doc(ctx))) + b"tail",
        400,
        headers=(("Content-Encoding", "gzip"),),
    ),
    # -- oversize
    Hostile(
        "body-past-the-limit",
        "/fhir",
        lambda ctx: dumps(bundle(ctx, count=40)) + b" " * SMALL_LIMIT,
        413,
        small_limit=True,
    ),
    Hostile(
        "chunked-body-past-the-limit",
        "/fhir/DocumentReference",
        with_doc(description="y" * (SMALL_LIMIT * 2)),
        413,
        small_limit=True,
        chunked=True,
    ),
    Hostile(
        "content-length-of-a-hundred-digits",
        "/fhir/DocumentReference",
        with_doc(),
        413,
        headers=(("Content-Length", "9" * 100),),
    ),
]


PATCH_DOCUMENT = "/fhir/DocumentReference/{document}"
JSON_PATCH = (("Content-Type", "application/json-patch+json"),)
LONG_INDEX = "9" * 5000


def fhirpath_patch(*parts: dict[str, Any], parameter: Any = None) -> Body:
    operation = {"name": "operation", "part": list(parts)}
    document = {"resourceType": "Parameters", "parameter": [operation]}
    if parameter is not None:
        document["parameter"] = parameter
    return lambda _ctx: dumps(document)


def json_patch(document: Any) -> Body:
    return lambda _ctx: dumps(document)


LABEL = {"coding": [{"code": "R"}]}
PATCHES = [
    Hostile(
        "patch-parameter-not-a-list",
        PATCH_DOCUMENT,
        fhirpath_patch(parameter=True),
        422,
        method="PATCH",
    ),
    Hostile(
        "patch-parameter-a-string",
        PATCH_DOCUMENT,
        fhirpath_patch(parameter="operation"),
        422,
        method="PATCH",
    ),
    Hostile(
        "patch-part-a-string",
        PATCH_DOCUMENT,
        lambda _ctx: dumps(
            {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": "type"}]}
        ),
        422,
        method="PATCH",
    ),
    Hostile(
        "patch-index-of-5000-digits",
        PATCH_DOCUMENT,
        fhirpath_patch(
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": f"DocumentReference.securityLabel[{LONG_INDEX}]"},
            {"name": "value", "valueCodeableConcept": LABEL},
        ),
        422,
        method="PATCH",
    ),
    Hostile(
        "patch-index-in-arabic-indic-digits",
        PATCH_DOCUMENT,
        fhirpath_patch(
            {"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "DocumentReference.securityLabel[\u0660]"},
        ),
        422,
        method="PATCH",
    ),
    Hostile(
        "patch-status-to-a-number",
        PATCH_DOCUMENT,
        json_patch([{"op": "replace", "path": "/status", "value": 5}]),
        422,
        method="PATCH",
        headers=JSON_PATCH,
    ),
    Hostile(
        "json-patch-index-of-5000-digits",
        PATCH_DOCUMENT,
        json_patch([{"op": "replace", "path": f"/securityLabel/{LONG_INDEX}", "value": LABEL}]),
        422,
        method="PATCH",
        headers=JSON_PATCH,
    ),
    Hostile(
        "json-patch-an-object",
        PATCH_DOCUMENT,
        json_patch({"op": "remove", "path": "/securityLabel"}),
        400,
        method="PATCH",
        headers=JSON_PATCH,
    ),
    Hostile(
        "json-patch-huge-integer",
        PATCH_DOCUMENT,
        lambda _ctx: b'[{"op": "replace", "path": "/status", "value": ' + b"7" * 5000 + b"}]",
        400,
        method="PATCH",
        headers=JSON_PATCH,
    ),
    Hostile(
        "json-patch-other-field",
        PATCH_DOCUMENT,
        json_patch([{"op": "replace", "path": "/subject", "value": {"reference": "Patient/x"}}]),
        422,
        method="PATCH",
        headers=JSON_PATCH,
    ),
]
CORPUS += PATCHES


# -- the test ------------------------------------------------------------------------------


@pytest.fixture
def small_limit_client(services, settings) -> Iterator[TestClient]:
    limited = settings.model_copy(update={"max_body_bytes": SMALL_LIMIT})
    app = create_app(limited, dataclasses.replace(services, settings=limited))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def context(client, tokens) -> Context:
    patient_id, ins_a = create_patient(client, tokens, seed=1)
    other_id, ins_b = create_patient(client, tokens, seed=2)
    document = publish(client, tokens.professional(), patient_id, labels=("N",))
    return Context(patient_id, ins_a, other_id, ins_b, document["id"])


def test_every_case_has_a_unique_name() -> None:
    names = [case.name for case in CORPUS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", CORPUS, ids=[case.name for case in CORPUS])
def test_hostile_input_is_refused_with_an_outcome_and_nothing_is_stored(
    case: Hostile, client, small_limit_client, tokens, services, context
) -> None:
    body = case.body(context)
    role = tokens.patient(context.ins) if case.role == "patient" else tokens.professional()
    headers = {**role, **dict(case.headers)}
    if case.chunked:
        content: Any = (body[start : start + 8192] for start in range(0, len(body), 8192))
    else:
        content = body
    before = row_counts(services.engine)
    target = small_limit_client if case.small_limit else client
    url = case.url.replace("{document}", context.document_id)
    response = target.request(case.method, url, content=content, headers=headers)
    assert_outcome(response, case.status)
    assert row_counts(services.engine) == before


def test_the_corpus_builders_make_acceptable_input_when_left_alone(client, tokens, context) -> None:
    """The refusals above are for what each case changed, not for a broken baseline."""
    published = client.post(
        "/fhir/DocumentReference", content=with_doc()(context), headers=tokens.professional()
    )
    assert published.status_code == 201, published.text
    provided = client.post(
        "/fhir", content=dumps(bundle(context, count=2)), headers=tokens.professional()
    )
    assert provided.status_code == 200, provided.text
    own = client.post(
        "/fhir/DocumentReference",
        content=dumps(document_reference({"reference": f"Patient/{context.patient_id}"})),
        headers=tokens.patient(context.ins),
    )
    assert own.status_code == 201, own.text
    created = client.post(
        "/fhir/Patient",
        content=patient(lambda _c, _r: None)(context),
        headers=tokens.patient(ins(77)),
    )
    assert created.status_code == 201, created.text
    packed = client.post(
        "/fhir/DocumentReference",
        content=gzip.compress(dumps(doc(context))),
        headers={**tokens.professional(), "Content-Encoding": "gzip"},
    )
    assert packed.status_code == 201, packed.text
    base64.b64decode(doc(context)["content"][0]["attachment"]["data"], validate=True)
