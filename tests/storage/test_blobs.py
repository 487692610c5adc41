"""Blob stores for ciphertext (db:, file://, s3://), the orphan sweep, and the documents they
hold end to end over HTTP. S3 is a real S3-compatible server (moto's server mode) run as a
separate process on a loopback port."""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import boto3
import pytest
from botocore.config import Config
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from tests.factories import (
    DOCTOR,
    Tokens,
    document_reference,
    ins,
    patient_resource,
    provide_bundle,
)
from vault.api.app import create_app
from vault.errors import BadRequest, NotFound, ServiceUnavailable, VaultError
from vault.models import Binary
from vault.models.base import utcnow
from vault.services import Services, build_services
from vault.settings import Settings
from vault.storage.blobs.base import READ_CHUNK, check_key
from vault.storage.blobs.factory import blob_store_from_url
from vault.storage.blobs.file import FileBlobStore
from vault.storage.blobs.s3 import MIN_PART_SIZE, S3BlobStore
from vault.storage.blobs.sweep import sweep_orphans

MiB = 1024 * 1024
GRACE = timedelta(hours=1)
MARKER = b"BLOB-STORE-PLAINTEXT-MARKER-7f3a"


# -- an S3-compatible server for the whole session ------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"moto server exited early:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"moto server did not start listening:\n{log.read_text()}")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def aws_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The usual AWS variables, as an operator would set them; nothing from the host leaks in."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "vault-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "vault-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "absent-aws-credentials"))
    return s3_endpoint


@pytest.fixture(scope="session")
def s3_admin(s3_endpoint: str):
    """The test's own client, to set up buckets and look behind the store's back."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="eu-west-3",
        aws_access_key_id="vault-test",
        aws_secret_access_key="vault-test-secret",
    )


@pytest.fixture
def s3_bucket(aws_env: str, s3_admin) -> str:
    name = f"vault-test-{secrets.token_hex(6)}"
    s3_admin.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
    )
    return name


# -- a vault on each blob store ---------------------------------------------------------------


def _blob_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "db":
        return "db:"
    if kind == "file":
        return (tmp_path / "blobs").as_uri()
    return f"s3://{request.getfixturevalue('s3_bucket')}/vault/blobs"


@pytest.fixture(params=["db", "file", "s3"])
def blob_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _blob_url(request.param, request, tmp_path)


@pytest.fixture(params=["file", "s3"])
def outside_blob_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The stores that live outside the database, where a blob can outlive a rollback."""
    return _blob_url(request.param, request, tmp_path)


def _vault(settings: Settings, url: str) -> Iterator[Services]:
    built = build_services(settings.model_copy(update={"blob_store": url}))
    yield built
    built.close()


@pytest.fixture
def vault(blob_url: str, settings: Settings, services: Services) -> Iterator[Services]:
    # Depending on `services` empties the database after the test.
    yield from _vault(settings, blob_url)


@pytest.fixture
def outside_vault(
    outside_blob_url: str, settings: Settings, services: Services
) -> Iterator[Services]:
    yield from _vault(settings, outside_blob_url)


def _client(vault: Services, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"blob_store": vault.settings.blob_store}), vault)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def http(vault: Services, settings: Settings) -> Iterator[TestClient]:
    yield from _client(vault, settings)


@pytest.fixture
def outside_http(outside_vault: Services, settings: Settings) -> Iterator[TestClient]:
    yield from _client(outside_vault, settings)


# -- helpers ---------------------------------------------------------------------------------


def pieces(data: bytes, size: int = 100_003) -> Iterator[bytes]:
    """Odd-sized pieces, so that no chunk boundary lines up with a store's own."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def put(vault: Services, data: bytes | Iterable[bytes]) -> str:
    key = uuid4().hex
    chunks = pieces(data) if isinstance(data, bytes) else data
    with vault.session_factory.begin() as session:
        vault.blobs.put(session, key, chunks)
    return key


def stored_keys(vault: Services) -> set[str]:
    return set(vault.blobs.list_older_than(utcnow() + timedelta(days=1)))


def referenced_keys(vault: Services) -> set[str]:
    with vault.session_factory() as session:
        return set(session.scalars(select(Binary.blob_key)))


def assert_every_record_has_its_blob(vault: Services) -> None:
    for key in referenced_keys(vault):
        assert b"".join(vault.blobs.read(key))


def publish(client: TestClient, tokens: Tokens, content: bytes, seed: int = 1) -> dict[str, str]:
    ins_value = ins(seed)
    created = client.post(
        "/fhir/Patient", json=patient_resource(ins_value), headers=tokens.patient(ins_value)
    )
    assert created.status_code == 201, created.text
    patient_id = created.headers["Location"].split("/Patient/")[1].split("/")[0]
    master = f"urn:uuid:{uuid4()}"
    published = client.post(
        "/fhir/DocumentReference",
        json=document_reference(
            {"reference": f"Patient/{patient_id}"},
            content,
            content_type="application/octet-stream",
            master=master,
        ),
        headers=tokens.professional(),
    )
    assert published.status_code == 201, published.text
    return {
        "id": published.json()["id"],
        "patient": patient_id,
        "ins": ins_value,
        "master": master,
        "binary": published.json()["content"][0]["attachment"]["url"].split("/")[-1],
    }


def download(client: TestClient, tokens: Tokens, doc: dict[str, str]) -> bytes:
    response = client.get(f"/fhir/Binary/{doc['binary']}", headers=tokens.patient(doc["ins"]))
    assert response.status_code == 200, response.text
    return response.content


# -- keys ------------------------------------------------------------------------------------


@given(st.text(max_size=64))
def test_only_32_lowercase_hex_characters_make_a_blob_key(name: str):
    if len(name) == 32 and all(character in "0123456789abcdef" for character in name):
        assert check_key(name) == name
    else:
        with pytest.raises(BadRequest):
            check_key(name)


INVALID_KEYS = [
    "../../etc/passwd",
    "/etc/passwd",
    "../" + "0" * 29,
    "00/00/" + "0" * 26,
    "A" * 32,
    "a" * 33,
    "a" * 31,
    "",
    "a" * 31 + "\x00",
    "a" * 32 + ".part",
]


def test_invalid_keys_are_refused_before_touching_storage(vault: Services, tmp_path):
    consumed = []

    def chunks() -> Iterator[bytes]:
        consumed.append(True)
        yield b"should never be written"

    for key in INVALID_KEYS:
        with vault.session_factory.begin() as session:
            with pytest.raises(BadRequest):
                vault.blobs.put(session, key, chunks())
            with pytest.raises(BadRequest):
                vault.blobs.delete(session, key)
        with pytest.raises(BadRequest):
            vault.blobs.read(key)
    assert consumed == []
    assert stored_keys(vault) == set()
    assert [path for path in tmp_path.rglob("*") if path.is_file()] == []


# -- configuration ---------------------------------------------------------------------------


def test_store_urls_name_the_store_and_where_it_keeps_blobs(tmp_path, aws_env, services):
    directory = tmp_path / "with space"
    file_store = blob_store_from_url(directory.as_uri(), services.session_factory)
    assert isinstance(file_store, FileBlobStore)
    assert file_store.root == directory
    s3_store = blob_store_from_url("s3://vault-documents/prod/blobs/", services.session_factory)
    assert isinstance(s3_store, S3BlobStore)
    assert (s3_store.bucket, s3_store.prefix) == ("vault-documents", "prod/blobs/")
    assert blob_store_from_url("s3://vault-documents", services.session_factory).prefix == ""
    assert blob_store_from_url("db:", services.session_factory).transactional


@pytest.mark.parametrize(
    "url", ["file://relative/blobs", "file:relative", "s3://", "s3:///prefix", "ftp://x", "blobs"]
)
def test_store_urls_that_could_be_misread_are_refused(url: str, aws_env, services):
    with pytest.raises(VaultError):
        blob_store_from_url(url, services.session_factory)


# -- put, read, delete -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [0, 1, READ_CHUNK - 1, READ_CHUNK, 2 * READ_CHUNK + 12_345], ids=lambda n: f"{n}B"
)
def test_blob_reads_back_byte_identical(vault: Services, size: int):
    data = os.urandom(size)
    key = put(vault, data)
    chunks = list(vault.blobs.read(key))
    assert b"".join(chunks) == data
    assert all(len(chunk) <= READ_CHUNK for chunk in chunks)


def test_blob_larger_than_a_read_chunk_streams_in_several_chunks(vault: Services):
    data = os.urandom(3 * READ_CHUNK + 1)
    chunks = list(vault.blobs.read(put(vault, data)))
    assert len(chunks) >= 4
    assert b"".join(chunks) == data


def test_missing_blob_is_not_found_before_any_byte_is_read(vault: Services):
    with pytest.raises(NotFound):
        vault.blobs.read(uuid4().hex)


def test_deleted_blob_is_gone_and_deleting_again_is_harmless(vault: Services):
    key = put(vault, b"ciphertext")
    kept = put(vault, b"other ciphertext")
    with vault.session_factory.begin() as session:
        vault.blobs.delete(session, key)
    with pytest.raises(NotFound):
        vault.blobs.read(key)
    with vault.session_factory.begin() as session:
        vault.blobs.delete(session, key)
    assert b"".join(vault.blobs.read(kept)) == b"other ciphertext"
    assert stored_keys(vault) == {kept}


def test_write_that_fails_midway_leaves_nothing_behind(vault: Services):
    class ProducerFailed(Exception):
        pass

    def failing() -> Iterator[bytes]:
        # More than a multipart part, so S3 has an upload in progress when it fails.
        yield from pieces(os.urandom(9 * MiB))
        raise ProducerFailed

    with pytest.raises(ProducerFailed):
        put(vault, failing())
    assert stored_keys(vault) == set()
    assert vault.blobs.drop_interrupted(utcnow() + timedelta(days=1)) == 0


def test_store_is_reachable(vault: Services):
    vault.blobs.check()


# -- the orphan sweep -------------------------------------------------------------------------


def test_sweep_removes_old_orphans_and_keeps_referenced_blobs(vault: Services, http: TestClient):
    tokens = Tokens(vault.issuer)
    doc = publish(http, tokens, b"%PDF-1.7 compte rendu " + MARKER)
    referenced = referenced_keys(vault)
    orphans = {put(vault, b"left by a crash"), put(vault, b"")}

    result = sweep_orphans(vault.blobs, vault.session_factory, GRACE, now=utcnow() + 2 * GRACE)

    assert set(result.removed) == orphans
    assert stored_keys(vault) == referenced
    for orphan in orphans:
        with pytest.raises(NotFound):
            vault.blobs.read(orphan)
    assert download(http, tokens, doc) == b"%PDF-1.7 compte rendu " + MARKER


def test_sweep_removes_deleted_documents_ciphertext_once_the_deletion_is_old(
    vault: Services, http: TestClient
):
    tokens = Tokens(vault.issuer)
    kept = publish(http, tokens, b"%PDF-1.7 kept " + MARKER, seed=1)
    deleted = publish(http, tokens, b"%PDF-1.7 deleted " + MARKER, seed=2)
    with vault.session_factory() as session:
        deleted_key = session.scalar(select(Binary.blob_key).where(Binary.id == deleted["binary"]))
    gone = http.delete(f"/fhir/DocumentReference/{deleted['id']}", headers=tokens.professional())
    assert gone.status_code in (200, 204), gone.text

    # Just deleted: a backup that read its snapshot before may still be copying the blob.
    recent = sweep_orphans(vault.blobs, vault.session_factory, GRACE, now=utcnow() + GRACE / 2)
    assert recent.removed == []
    assert deleted_key in stored_keys(vault)

    later = sweep_orphans(vault.blobs, vault.session_factory, GRACE, now=utcnow() + 2 * GRACE)
    assert later.removed == [deleted_key]
    assert deleted_key not in stored_keys(vault)
    # The tombstone stays, and says so; the other document is untouched.
    assert (
        http.get(
            f"/fhir/Binary/{deleted['binary']}", headers=tokens.patient(deleted["ins"])
        ).status_code
        == 410
    )
    assert download(http, tokens, kept) == b"%PDF-1.7 kept " + MARKER


def test_sweep_leaves_orphans_younger_than_the_grace_period(vault: Services):
    young = put(vault, b"an upload whose transaction may still commit")
    result = sweep_orphans(vault.blobs, vault.session_factory, GRACE)
    assert result.removed == []
    assert b"".join(vault.blobs.read(young)) == b"an upload whose transaction may still commit"


def test_sweep_finds_orphans_beyond_the_first_page_of_a_listing(vault: Services):
    orphans = {put(vault, b"x") for _ in range(5)}
    if hasattr(vault.blobs, "list_page_size"):
        vault.blobs.list_page_size = 2
    result = sweep_orphans(vault.blobs, vault.session_factory, GRACE, now=utcnow() + 2 * GRACE)
    assert set(result.removed) == orphans
    assert stored_keys(vault) == set()


def test_sweep_drops_interrupted_part_files_once_old(tmp_path, services: Services):
    store = FileBlobStore(tmp_path / "blobs")
    key = uuid4().hex
    partial = store.root / key[:2] / key[2:4] / f"{key}.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a blob, the process was killed here")

    young = sweep_orphans(store, services.session_factory, GRACE)
    assert (young.interrupted, partial.exists()) == (0, True)
    old = sweep_orphans(store, services.session_factory, GRACE, now=utcnow() + 2 * GRACE)
    assert (old.interrupted, old.removed, partial.exists()) == (1, [], False)


def test_sweep_aborts_interrupted_multipart_uploads(s3_bucket: str, s3_admin, services: Services):
    # moto reports every upload as initiated in 2010, so only the "old enough" side of the
    # grace period can be shown against it; list_older_than covers the young side.
    store = S3BlobStore(s3_bucket, "vault")
    name = f"vault/{uuid4().hex}"
    foreign = f"elsewhere/{uuid4().hex}"
    for key in (name, foreign):
        upload = s3_admin.create_multipart_upload(Bucket=s3_bucket, Key=key)
        s3_admin.upload_part(
            Bucket=s3_bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * MiB
        )

    result = sweep_orphans(store, services.session_factory, GRACE, now=utcnow() + 2 * GRACE)

    assert result.interrupted == 1
    left = s3_admin.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert [upload["Key"] for upload in left] == [foreign]


def test_sweep_never_touches_files_that_are_not_blobs(tmp_path, services: Services):
    store = FileBlobStore(tmp_path / "blobs")
    key = put_direct(store, services)
    strangers = [
        store.root / "ab" / "cd" / "README",
        store.root / key[:2] / key[2:4] / key.upper(),
        store.root / "ab" / "cd" / "notes.part",
        store.root / "ab" / "cd" / ("f" * 32),  # a key name filed in the wrong directory
    ]
    for path in strangers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"operator's file")

    result = sweep_orphans(store, services.session_factory, GRACE, now=utcnow() + 2 * GRACE)

    assert result.removed == [key]
    assert all(path.read_bytes() == b"operator's file" for path in strangers)


def test_sweep_never_touches_objects_outside_its_prefix_or_not_named_as_blobs(
    s3_bucket: str, s3_admin, services: Services
):
    store = S3BlobStore(s3_bucket, "vault/blobs")
    key = put_direct(store, services)
    strangers = [
        f"other-app/{uuid4().hex}",
        uuid4().hex,
        "vault/blobs/README",
        f"vault/blobs/{uuid4().hex.upper()}",
    ]
    for name in strangers:
        s3_admin.put_object(Bucket=s3_bucket, Key=name, Body=b"someone else's object")

    result = sweep_orphans(store, services.session_factory, GRACE, now=utcnow() + 2 * GRACE)

    assert result.removed == [key]
    left = {item["Key"] for item in s3_admin.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert left == set(strangers)


def put_direct(store: FileBlobStore | S3BlobStore, services: Services) -> str:
    key = uuid4().hex
    with services.session_factory.begin() as session:
        store.put(session, key, [b"orphan"])
    return key


# -- S3 specifics ---------------------------------------------------------------------------


def test_s3_blob_larger_than_a_part_goes_up_in_parts_without_being_buffered_whole(
    s3_bucket: str, s3_admin, services: Services
):
    store = S3BlobStore(s3_bucket, "vault", part_size=MIN_PART_SIZE)
    block = os.urandom(64 * 1024)
    parts = 8
    size = parts * MIN_PART_SIZE - 1000
    expected = hashlib.sha256()

    def produce() -> Iterator[bytes]:
        sent = 0
        while sent < size:
            piece = block[: size - sent]
            expected.update(piece)
            sent += len(piece)
            yield piece

    key = uuid4().hex
    tracemalloc.start()
    try:
        with services.session_factory.begin() as session:
            store.put(session, key, produce())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 4 * MIN_PART_SIZE < size
    etag = s3_admin.head_object(Bucket=s3_bucket, Key=f"vault/{key}")["ETag"]
    assert etag.strip('"').endswith(f"-{parts}")
    received = hashlib.sha256()
    for chunk in store.read(key):
        assert len(chunk) <= READ_CHUNK
        received.update(chunk)
    assert received.digest() == expected.digest()


def test_s3_store_finds_its_endpoint_in_aws_endpoint_url(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch
):
    S3BlobStore(s3_bucket).check()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(ServiceUnavailable):
        S3BlobStore(s3_bucket).check()


def test_s3_missing_bucket_is_reported_unavailable(aws_env: str):
    with pytest.raises(ServiceUnavailable):
        S3BlobStore(f"vault-absent-{secrets.token_hex(6)}").check()


def test_s3_outage_is_service_unavailable_not_a_stack_trace(aws_env: str):
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{_free_port()}",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    store = S3BlobStore("vault-unreachable", client=client)
    key = uuid4().hex
    with pytest.raises(ServiceUnavailable):
        store.put(None, key, [b"ciphertext"])
    with pytest.raises(ServiceUnavailable):
        store.read(key)
    with pytest.raises(ServiceUnavailable):
        list(store.list_older_than(utcnow()))


# -- end to end over HTTP ---------------------------------------------------------------------


def test_document_pushed_over_http_reads_back_byte_identical_and_only_ciphertext_is_stored(
    outside_vault: Services, outside_http: TestClient
):
    tokens = Tokens(outside_vault.issuer)
    content = b"%PDF-1.7 resultats " + MARKER
    doc = publish(outside_http, tokens, content)

    assert download(outside_http, tokens, doc) == content
    (key,) = stored_keys(outside_vault)
    assert MARKER not in b"".join(outside_vault.blobs.read(key))


def test_transaction_failing_after_its_blob_was_written_commits_nothing_and_the_blob_is_swept(
    outside_vault: Services, outside_http: TestClient
):
    tokens = Tokens(outside_vault.issuer)
    existing = publish(outside_http, tokens, b"first submission")
    before_keys = stored_keys(outside_vault)
    before_records = referenced_keys(outside_vault)

    # The first document is new and valid, so its blob is written; the second reuses the
    # existing masterIdentifier with other content, which only the database can tell.
    bundle = provide_bundle(
        {"reference": f"Patient/{existing['patient']}"},
        [(b"new document " + MARKER, "text/plain"), (b"different content", "text/plain")],
    )
    bundle["entry"][3]["resource"]["masterIdentifier"]["value"] = existing["master"]
    response = outside_http.post("/fhir", json=bundle, headers=tokens.software(on_behalf_of=DOCTOR))
    assert response.status_code == 409, response.text
    assert response.json()["resourceType"] == "OperationOutcome"

    assert referenced_keys(outside_vault) == before_records
    assert_every_record_has_its_blob(outside_vault)
    leftovers = stored_keys(outside_vault) - before_keys
    assert len(leftovers) == 1

    result = sweep_orphans(
        outside_vault.blobs, outside_vault.session_factory, GRACE, now=utcnow() + 2 * GRACE
    )
    assert set(result.removed) == leftovers
    assert stored_keys(outside_vault) == before_keys
    assert download(outside_http, tokens, existing) == b"first submission"


def test_large_document_streams_back_byte_identical(
    outside_vault: Services, outside_http: TestClient
):
    tokens = Tokens(outside_vault.issuer)
    content = os.urandom(20 * MiB)
    doc = publish(outside_http, tokens, content)

    received = hashlib.sha256()
    size = 0
    with outside_http.stream(
        "GET", f"/fhir/Binary/{doc['binary']}", headers=tokens.patient(doc["ins"])
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        for chunk in response.iter_bytes():
            received.update(chunk)
            size += len(chunk)
    assert size == len(content)
    assert received.digest() == hashlib.sha256(content).digest()
