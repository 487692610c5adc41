"""ITI-68 streams: a large document goes out segment by segment, never whole in memory, in
its own bytes or as a FHIR Binary."""

from __future__ import annotations

import base64
import hashlib
import json
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import create_patient, publish
from vault.api.fhir.binary import binary_resource
from vault.storage.blobs.base import READ_CHUNK

LARGE = 50 * 1000 * 1000
# Decrypting holds one stored chunk and one segment or two; the request, the client and the
# test's own bookkeeping add a little. A copy of the document would be fifty times this.
MEMORY_BOUND = 8 * READ_CHUNK


def _large_content() -> bytes:
    # Incompressible and not all one byte, so nothing along the way could shortcut it.
    block = hashlib.sha256(b"vault").digest() * (1024 * 1024 // 32)
    return b"".join(bytes([index]) + block[: LARGE // 50 - 1] for index in range(50))


@pytest.fixture
def large_document(client, tokens) -> tuple[dict[str, str], str, bytes]:
    patient_id, ins_value = create_patient(client, tokens)
    content = _large_content()
    assert len(content) == LARGE
    stored = publish(
        client,
        tokens.professional(),
        patient_id,
        content,
        content_type="application/octet-stream",
    )
    return tokens.patient(ins_value), "/fhir/" + stored["content"][0]["attachment"]["url"], content


@pytest.mark.slow
def test_a_50_mb_document_streams_within_a_few_chunks_of_memory(client, large_document):
    headers, url, content = large_document
    expected = hashlib.sha256(content).hexdigest()
    del content

    digest, received = hashlib.sha256(), 0
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with client.stream("GET", url, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["Content-Length"] == str(LARGE)
            for chunk in response.iter_bytes():
                digest.update(chunk)
                received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert received == LARGE
    assert digest.hexdigest() == expected
    assert peak < MEMORY_BOUND, f"peak {peak} bytes while streaming {LARGE}"


@pytest.mark.slow
def test_a_50_mb_document_as_a_fhir_binary_streams_within_a_few_chunks_of_memory(
    client, large_document
):
    headers, url, content = large_document
    binary_id = url.rpartition("/")[2]
    expected = hashlib.sha256(
        b'{"resourceType":"Binary","id":"'
        + binary_id.encode()
        + b'","contentType":"application/octet-stream","data":"'
    )
    expected.update(base64.b64encode(content))
    expected.update(b'"}')
    del content

    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with client.stream(
            "GET", url, headers={**headers, "Accept": "application/fhir+json"}
        ) as response:
            assert response.status_code == 200
            assert response.headers["Content-Type"].startswith("application/fhir+json")
            for chunk in response.iter_bytes():
                digest.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert digest.hexdigest() == expected.hexdigest()
    assert peak < MEMORY_BOUND, f"peak {peak} bytes while streaming {LARGE}"


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=1, max_value=97), max_size=40))
def test_the_streamed_binary_resource_is_the_whole_content_in_base64(content, cuts):
    chunks, position = [], 0
    for size in cuts:
        chunks.append(content[position : position + size])
        position += size
    chunks.append(content[position:])

    body = b"".join(binary_resource("b-1", 'text/plain; charset="utf-8"', iter(chunks)))

    resource = json.loads(body)
    assert resource == {
        "resourceType": "Binary",
        "id": "b-1",
        "contentType": 'text/plain; charset="utf-8"',
        "data": base64.b64encode(content).decode(),
    }
