"""ITI-67 paging: _count and next links over a keyset cursor. Every matching document the
caller may see comes exactly once, pages are full until the last, and documents added
while a client pages do not shift or repeat what it has not read yet."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import OTHER_DOCTOR, create_patient, document_reference
from vault.documents.search import SCAN_BATCH, decode_cursor, encode_cursor
from vault.errors import BadRequest


def _publish_many(client, headers, patient_id: str, count: int) -> list[str]:
    ids = []
    for index in range(count):
        body = document_reference(
            {"reference": f"Patient/{patient_id}"}, f"document {index}".encode()
        )
        response = client.post("/fhir/DocumentReference", json=body, headers=headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def _pages(client, headers, url: str) -> list[list[str]]:
    pages = []
    while url:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        bundle = response.json()
        assert "total" not in bundle
        pages.append([entry["resource"]["id"] for entry in bundle["entry"]])
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), "")
        if url:
            # Links point at the vault's configured base.
            assert url.startswith("http://testserver/fhir/DocumentReference?")
            url = url.removeprefix("http://testserver")
    return pages


@pytest.mark.parametrize("count", [1, 4, 7, 14, 50])
def test_paging_returns_each_document_exactly_once_in_full_pages(client, tokens, count):
    patient_id, ins_value = create_patient(client, tokens)
    published = _publish_many(client, tokens.professional(), patient_id, 14)

    pages = _pages(
        client,
        tokens.patient(ins_value),
        f"/fhir/DocumentReference?patient={patient_id}&_count={count}",
    )

    seen = [document for page in pages for document in page]
    assert seen == list(reversed(published))
    assert all(len(page) == count for page in pages[:-1])
    assert 0 < len(pages[-1]) <= count


def test_the_next_link_keeps_the_search_parameters(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    _publish_many(client, tokens.professional(), patient_id, 3)

    response = client.get(
        f"/fhir/DocumentReference?patient={patient_id}&status=current&_count=2",
        headers=tokens.patient(ins_value),
    )

    next_url = next(link["url"] for link in response.json()["link"] if link["relation"] == "next")
    query = parse_qs(urlsplit(next_url).query)
    assert query["patient"] == [patient_id]
    assert query["status"] == ["current"]
    assert query["_count"] == ["2"]
    assert query["_cursor"]


def test_paging_a_professionals_view_skips_what_they_may_not_see_without_short_pages(
    client, tokens
):
    patient_id, _ = create_patient(client, tokens)
    mine = []
    for _ in range(4):
        mine += _publish_many(client, tokens.professional(), patient_id, 2)
        _publish_many(client, tokens.professional(OTHER_DOCTOR), patient_id, 3)

    pages = _pages(
        client, tokens.professional(), f"/fhir/DocumentReference?patient={patient_id}&_count=3"
    )

    assert [len(page) for page in pages] == [3, 3, 2]
    assert [document for page in pages for document in page] == list(reversed(mine))


def test_visible_documents_beyond_a_scan_batch_of_invisible_ones_are_found(
    client, tokens, services
):
    """More invisible candidates than one database batch lie between two visible ones."""
    patient_id, _ = create_patient(client, tokens)
    first = _publish_many(client, tokens.professional(), patient_id, 1)
    _publish_many(client, tokens.professional(OTHER_DOCTOR), patient_id, SCAN_BATCH + 5)
    last = _publish_many(client, tokens.professional(), patient_id, 1)

    pages = _pages(
        client, tokens.professional(), f"/fhir/DocumentReference?patient={patient_id}&_count=1"
    )

    assert pages == [last, first]


def test_documents_added_while_paging_do_not_repeat_or_shift_later_pages(client, tokens):
    patient_id, ins_value = create_patient(client, tokens)
    patient = tokens.patient(ins_value)
    published = _publish_many(client, tokens.professional(), patient_id, 6)
    first = client.get(f"/fhir/DocumentReference?patient={patient_id}&_count=3", headers=patient)
    next_url = next(link["url"] for link in first.json()["link"] if link["relation"] == "next")

    _publish_many(client, tokens.professional(), patient_id, 4)
    rest = _pages(client, patient, next_url.removeprefix("http://testserver"))

    seen = [entry["resource"]["id"] for entry in first.json()["entry"]] + [
        document for page in rest for document in page
    ]
    assert seen == list(reversed(published))


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.just(UTC),
    ),
    st.text(min_size=1, max_size=64),
)
def test_a_cursor_decodes_to_the_position_it_encodes(created, document_id):
    assert decode_cursor(encode_cursor(created, document_id)) == (created, document_id)


@given(st.text(max_size=200))
def test_any_cursor_text_decodes_or_is_refused_as_a_bad_request(text):
    try:
        created, document_id = decode_cursor(text)
    except BadRequest:
        return
    assert isinstance(created, datetime)
    assert isinstance(document_id, str)
