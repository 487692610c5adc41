"""What the encryption promises, checked from the outside: over HTTP, then by looking at (and
tampering with) what actually sits in PostgreSQL and the blob store."""

from __future__ import annotations

import base64
import json
import os
import secrets
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tests.factories import DOCTOR, INS_SYSTEM, provide_bundle
from tests.storage.vaults import Vault, encodings, own_vault, snapshot, table_names
from vault.documents.service import binary_context, version_context
from vault.errors import IntegrityError
from vault.patients.service import patient_context
from vault.storage import crypto
from vault.storage.envelope import dek_context
from vault.storage.keys.service import KeyService

SEGMENT = crypto.DEFAULT_SEGMENT_SIZE


@pytest.fixture
def vault(services, client, tokens, settings) -> Vault:
    return Vault(settings, services, client, tokens)


def execute(engine: Engine, statement: str, **values: object) -> None:
    with engine.begin() as connection:
        connection.execute(text(statement), values)


def scalar(engine: Engine, statement: str, **values: object):
    with engine.connect() as connection:
        return connection.execute(text(statement), values).scalar_one()


def flip(engine: Engine, table: str, column: str, where: str, position: int, **values) -> None:
    """Flip one bit of one stored byte, as a disk fault or an attacker with SQL access would."""
    stored = bytearray(scalar(engine, f"SELECT {column} FROM {table} WHERE {where}", **values))
    stored[position] ^= 0x01
    execute(
        engine,
        f"UPDATE {table} SET {column} = :tampered WHERE {where}",
        tampered=bytes(stored),
        **values,
    )


def assert_refused_cleanly(response, *secrets_: bytes) -> None:
    assert response.status_code == 500, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    for secret in secrets_:
        assert secret not in response.content
        assert base64.b64encode(secret) not in response.content
    assert b"Traceback" not in response.content


# -- no plaintext at rest ------------------------------------------------------------------


@pytest.mark.parametrize("store", ["db:", "file"])
def test_no_plaintext_reaches_the_database_or_the_blob_store(
    services, database_url, tmp_path, caplog, store
):
    caplog.set_level("DEBUG", logger="vault")
    marker = f"PLAINTEXT-{secrets.token_hex(8)}"
    blob_root = tmp_path / "blobs"
    blob_store = "db:" if store == "db:" else f"file://{blob_root}"
    with own_vault(database_url, tmp_path / "data", blob_store=blob_store) as vault:
        patient_id, ins_value = vault.create_patient(41, family=f"Dupont-{marker}")
        subject = {"reference": f"Patient/{patient_id}"}
        large = os.urandom(SEGMENT) + f"resultats {marker}".encode() + os.urandom(SEGMENT)
        clear_identifier = f"urn:uuid:{uuid.uuid4()}"
        vault.publish(
            patient_id,
            f"%PDF-1.7 compte rendu {marker}".encode(),
            description=f"Compte rendu {marker}",
            masterIdentifier={"system": "urn:ietf:rfc:3986", "value": clear_identifier},
        )
        vault.publish(patient_id, large, "application/octet-stream")
        vault.publish(
            patient_id,
            f"directives anticipees {marker}".encode(),
            "text/plain",
            headers=vault.tokens.patient(ins_value),
        )
        lab_report = {
            "resourceType": "Bundle",
            "type": "document",
            "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{marker}"},
            "timestamp": "2026-11-20T10:00:00+01:00",
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": {
                        "resourceType": "Composition",
                        "status": "final",
                        "type": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]},
                        "date": "2026-11-20T10:00:00+01:00",
                        "author": [{"display": "Laboratoire"}],
                        "title": f"Compte rendu de biologie {marker}",
                    },
                }
            ],
        }
        bundle = provide_bundle(
            subject,
            [
                (f"courrier {marker}".encode(), "text/plain"),
                (json.dumps(lab_report).encode(), "application/fhir+json"),
            ],
        )
        submitted = vault.client.post(
            "/fhir", json=bundle, headers=vault.tokens.software(on_behalf_of=DOCTOR)
        )
        assert submitted.status_code == 200, submitted.text
        # Lookups by INS must not leave it behind either (audit, search state).
        found = vault.client.get(
            f"/fhir/DocumentReference?patient.identifier={INS_SYSTEM}|{ins_value}",
            headers=vault.tokens.professional(),
        )
        assert found.status_code == 200, found.text
        # What the doctor authored; the patient's own upload is not theirs to see.
        assert len(found.json()["entry"]) == 4

        rows = snapshot(vault.services.engine, table_names(vault.services.engine))
        assert rows["audit_entries"]
        if store == "db:":
            assert rows["blob_chunks"]
        else:
            assert not rows["blob_chunks"]
    dumped = "\n".join(line for lines in rows.values() for line in lines)
    # The scan does see what is stored: a field kept in clear on purpose, and bytea as hex.
    assert clear_identifier in dumped
    assert "\\x01" in dumped
    for secret in (marker, ins_value):
        for form in encodings(secret.encode()):
            if _is_hex(form):
                assert form.lower() not in dumped.lower(), f"{form!r} found in the database"
            else:
                assert form not in dumped, f"{form!r} found in the database"
    on_disk = [path for path in tmp_path.rglob("*") if path.is_file()]
    if store == "file":
        assert any(blob_root in path.parents for path in on_disk)
    for path in on_disk:
        data = path.read_bytes()
        for secret in (marker, ins_value):
            for form in encodings(secret.encode()):
                assert form.encode() not in data, f"{form!r} found in {path}"
    # The vault's own logs; the test client logs the URLs it requests, INS included.
    logged = "\n".join(
        record.getMessage() for record in caplog.records if record.name.startswith("vault")
    )
    assert "/fhir/DocumentReference" in logged
    assert marker not in logged
    assert ins_value not in logged


def _is_hex(form: str) -> bool:
    return all(char in "0123456789abcdefABCDEF" for char in form)


# -- tampering ------------------------------------------------------------------------------


def publish_one(vault: Vault, content: bytes, content_type: str = "text/plain"):
    patient_id, ins_value = vault.create_patient(51)
    document_id, binary_id = vault.publish(patient_id, content, content_type)
    return patient_id, ins_value, document_id, binary_id


@pytest.mark.parametrize(
    "position",
    [0, 1, 8, 8 + 5, -1],
    ids=["format-byte", "nonce-prefix", "first-ciphertext-byte", "inside", "tag"],
)
def test_tampered_content_ciphertext_is_refused_without_a_byte_of_it(vault, position):
    content = b"hemoglobine glyquee 6.1 %"
    _, ins_value, _, binary_id = publish_one(vault, content)
    engine = vault.services.engine
    blob_key = scalar(engine, "SELECT blob_key FROM binaries WHERE id = :id", id=binary_id)
    flip(engine, "blob_chunks", "data", "key = :key AND chunk_index = 0", position, key=blob_key)

    response = vault.client.get(
        f"/fhir/Binary/{binary_id}", headers=vault.tokens.patient(ins_value)
    )
    assert_refused_cleanly(response, content, b"hemoglobine")


def test_tampered_late_segment_stops_the_stream_before_any_unauthenticated_byte(vault):
    content = os.urandom(3 * SEGMENT + 100)
    _, ins_value, _, binary_id = publish_one(vault, content, "application/octet-stream")
    engine = vault.services.engine
    blob_key = scalar(engine, "SELECT blob_key FROM binaries WHERE id = :id", id=binary_id)
    third_segment = 8 + 2 * (SEGMENT + crypto.TAG_BYTES) + 10
    flip(
        engine, "blob_chunks", "data", "key = :key AND chunk_index = 0", third_segment, key=blob_key
    )

    response = vault.client.get(
        f"/fhir/Binary/{binary_id}", headers=vault.tokens.patient(ins_value)
    )
    # The headers went out with the first (authentic) segment; what follows stops short.
    assert len(response.content) < len(content)
    assert len(response.content) <= 2 * SEGMENT
    assert content.startswith(response.content)


@pytest.mark.parametrize(
    ("table", "column", "where"),
    [
        ("binaries", "wrapped_dek", "id = :binary"),
        ("document_versions", "resource_ciphertext", "document_id = :document"),
        ("document_versions", "resource_dek", "document_id = :document"),
        ("patient_keys", "wrapped_key", "patient_id = :patient"),
    ],
)
def test_tampered_key_or_resource_is_refused_with_an_operation_outcome(vault, table, column, where):
    content = b"%PDF-1.7 scanner thoracique"
    patient_id, ins_value, document_id, binary_id = publish_one(vault, content)
    engine = vault.services.engine
    ids = {"binary": binary_id, "document": document_id, "patient": patient_id}
    used = {name: value for name, value in ids.items() if f":{name}" in where}
    flip(engine, table, column, where, 20, **used)
    vault.services.keys.forget()

    headers = vault.tokens.patient(ins_value)
    if table == "document_versions":
        response = vault.client.get(f"/fhir/DocumentReference/{document_id}", headers=headers)
    else:
        response = vault.client.get(f"/fhir/Binary/{binary_id}", headers=headers)
    assert_refused_cleanly(response, content, b"scanner")


def test_tampered_patient_record_is_refused(vault):
    patient_id, ins_value = vault.create_patient(52, family="Lefebvre")
    flip(vault.services.engine, "patients", "resource_ciphertext", "id = :id", 30, id=patient_id)
    response = vault.client.get(
        f"/fhir/Patient/{patient_id}", headers=vault.tokens.patient(ins_value)
    )
    assert_refused_cleanly(response, b"Lefebvre", ins_value.encode())


# -- ciphertext moved to another record ---------------------------------------------------


def copy_columns(engine: Engine, table: str, columns: list[str], key: str, source, target):
    assignments = ", ".join(f"{column} = s.{column}" for column in columns)
    execute(
        engine,
        f"UPDATE {table} t SET {assignments} FROM {table} s"
        f" WHERE s.{key} = :source AND t.{key} = :target",
        source=source,
        target=target,
    )


@pytest.mark.parametrize("with_key", [True, False], ids=["blob-and-key", "blob-only"])
def test_content_moved_to_another_document_fails_instead_of_decrypting(vault, with_key):
    patient_id, ins_value = vault.create_patient(61)
    secret = b"serologie VIH positive"
    _, source = vault.publish(patient_id, secret, "text/plain")
    _, target = vault.publish(patient_id, b"radio du genou", "text/plain")
    engine = vault.services.engine
    source_blob = scalar(engine, "SELECT blob_key FROM binaries WHERE id = :id", id=source)
    target_blob = scalar(engine, "SELECT blob_key FROM binaries WHERE id = :id", id=target)
    copy_columns(engine, "blob_chunks", ["data"], "key", source_blob, target_blob)
    if with_key:
        copy_columns(engine, "binaries", ["wrapped_dek", "kek_id", "size"], "id", source, target)

    response = vault.client.get(f"/fhir/Binary/{target}", headers=vault.tokens.patient(ins_value))
    assert_refused_cleanly(response, secret, b"serologie")
    assert vault.download(source, ins_value) == secret


def test_document_reference_moved_to_another_document_or_patient_fails(vault):
    first_id, first_ins = vault.create_patient(62)
    second_id, second_ins = vault.create_patient(63)
    source, _ = vault.publish(first_id, b"a", "text/plain", description="suivi oncologie")
    same_patient, _ = vault.publish(first_id, b"b", "text/plain")
    other_patient, _ = vault.publish(second_id, b"c", "text/plain")
    engine = vault.services.engine
    columns = ["resource_ciphertext", "resource_dek", "kek_id"]
    for target, ins_value in ((same_patient, first_ins), (other_patient, second_ins)):
        copy_columns(engine, "document_versions", columns, "document_id", source, target)
        vault.services.keys.forget()
        response = vault.client.get(
            f"/fhir/DocumentReference/{target}", headers=vault.tokens.patient(ins_value)
        )
        assert_refused_cleanly(response, b"oncologie", source.encode())


def test_older_version_moved_onto_a_newer_one_fails(vault):
    patient_id, ins_value = vault.create_patient(64)
    old, _ = vault.publish(patient_id, b"v1", "text/plain")
    vault.publish(
        patient_id,
        b"v2",
        "text/plain",
        relatesTo=[{"code": "replaces", "target": {"reference": f"DocumentReference/{old}"}}],
    )
    engine = vault.services.engine
    assert scalar(engine, "SELECT current_version FROM documents WHERE id = :id", id=old) == 2
    execute(
        engine,
        "UPDATE document_versions t SET resource_ciphertext = s.resource_ciphertext,"
        " resource_dek = s.resource_dek FROM document_versions s"
        " WHERE s.document_id = :id AND s.version = 1 AND t.document_id = :id AND t.version = 2",
        id=old,
    )
    headers = vault.tokens.patient(ins_value)
    assert vault.client.get(f"/fhir/DocumentReference/{old}/_history/1", headers=headers).is_success
    assert_refused_cleanly(
        vault.client.get(f"/fhir/DocumentReference/{old}/_history/2", headers=headers)
    )


def test_patient_record_moved_to_another_patient_fails(vault):
    first_id, _ = vault.create_patient(65, family="Moreau")
    second_id, second_ins = vault.create_patient(66, family="Girard")
    copy_columns(
        vault.services.engine,
        "patients",
        ["resource_ciphertext", "resource_dek", "kek_id"],
        "id",
        first_id,
        second_id,
    )
    response = vault.client.get(
        f"/fhir/Patient/{second_id}", headers=vault.tokens.patient(second_ins)
    )
    assert_refused_cleanly(response, b"Moreau")


# -- crypto-shredding -----------------------------------------------------------------------


def test_shredded_document_cannot_be_decrypted_with_any_remaining_key(
    services, database_url, tmp_path
):
    secret = os.urandom(SEGMENT + 10) + b"IRM cerebrale"
    with own_vault(database_url, tmp_path / "data") as vault:
        patient_id, ins_value = vault.create_patient(71)
        shredded, binary_id = vault.publish(patient_id, secret, "application/octet-stream")
        _, kept_binary = vault.publish(patient_id, b"%PDF-1.7 kept", "application/pdf")
        other_id, _ = vault.create_patient(72)
        vault.publish(other_id, b"another patient's report", "text/plain")
        # Rotations leave several master keys and re-wrapped KEKs behind: all of them count.
        vault.services.keys.rotate_master_key(vault.services.session_factory)
        vault.services.key_provider.rotate()
        engine = vault.services.engine
        row = _binary_row(engine, binary_id)
        with vault.services.session_factory() as session:
            original_dek = vault.services.documents.envelope.content_key(
                session, patient_id, row["wrapped_dek"], row["kek_id"], row["context"]
            )

        deleted = vault.client.delete(
            f"/fhir/DocumentReference/{shredded}", headers=vault.tokens.professional()
        )
        assert deleted.status_code == 204, deleted.text

        headers = vault.tokens.patient(ins_value)
        assert vault.client.get(f"/fhir/Binary/{binary_id}", headers=headers).status_code in (
            404,
            410,
        )
        assert vault.client.get(
            f"/fhir/DocumentReference/{shredded}", headers=headers
        ).status_code in (404, 410)
        assert vault.download(kept_binary, ins_value) == b"%PDF-1.7 kept"

        # What is left of the shredded document: its ciphertext, and no key for it.
        row = _binary_row(engine, binary_id)
        assert row["wrapped_dek"] is None
        assert (
            scalar(
                engine,
                "SELECT count(*) FROM document_versions WHERE document_id = :id"
                " AND (resource_dek IS NOT NULL OR resource_ciphertext IS NOT NULL)",
                id=shredded,
            )
            == 0
        )
        ciphertext = b"".join(vault.services.blobs.read(row["blob_key"]))
        assert b"IRM cerebrale" not in ciphertext
        # The bytes are still there (so the test below is not vacuous): only the key is gone.
        assert (
            b"".join(
                crypto.open_segments(
                    original_dek, [ciphertext], row["context"], row["segment_size"]
                )
            )
            == secret
        )

        masters = _master_keys(vault)
        keks = _patient_keks(vault)
        deks = _remaining_data_keys(vault, keks)
        assert len(masters) == 3
        assert len(keks) == 2
        assert len(deks) >= 4
        every_key = masters + list(keks.values()) + deks
        assert original_dek not in every_key

        for key in every_key:
            with pytest.raises(IntegrityError):
                b"".join(
                    crypto.open_segments(key, [ciphertext], row["context"], row["segment_size"])
                )

        # No copy of the destroyed data key is wrapped anywhere in the database either.
        wrapped_contexts = [dek_context(row["context"]), dek_context(row["version_context"])]
        stored_values = _every_bytea_value(engine)
        assert stored_values
        for value in stored_values:
            for key in every_key:
                for context in wrapped_contexts:
                    with pytest.raises(IntegrityError):
                        crypto.open_sealed(key, value, context)
            for master_id in vault.services.key_provider.master_key_ids():
                for context in wrapped_contexts:
                    with pytest.raises(IntegrityError):
                        vault.services.key_provider.unwrap(master_id, value, context)


def _binary_row(engine: Engine, binary_id: str) -> dict[str, object]:
    with engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT b.id, b.document_id, b.patient_id, b.wrapped_dek, b.kek_id, b.blob_key,"
                " b.segment_size FROM binaries b WHERE b.id = :id"
            ),
            {"id": binary_id},
        ).one()
    return {
        "wrapped_dek": found.wrapped_dek,
        "kek_id": found.kek_id,
        "blob_key": found.blob_key,
        "segment_size": found.segment_size,
        "context": binary_context(found.id, found.document_id, found.patient_id),
        "version_context": version_context(found.document_id, 1, found.patient_id),
    }


def _master_keys(vault: Vault) -> list[bytes]:
    keyring = Path(vault.settings.effective_key_provider.removeprefix("local:"))
    return [
        base64.b64decode(entry["key"]) for entry in json.loads(keyring.read_text())["master_keys"]
    ]


def _patient_keks(vault: Vault) -> dict[str, bytes]:
    keys: KeyService = vault.services.keys
    keys.forget()
    with vault.services.session_factory() as session, session.connection() as connection:
        rows = connection.execute(text("SELECT id, patient_id FROM patient_keys")).all()
        return {row.id: keys.kek(session, row.patient_id, row.id).key for row in rows}


def _remaining_data_keys(vault: Vault, keks: dict[str, bytes]) -> list[bytes]:
    """Every data key an attacker holding every key could still unwrap."""
    envelope = vault.services.documents.envelope
    found = []
    with vault.services.session_factory() as session, session.connection() as connection:
        for row in connection.execute(
            text("SELECT id, document_id, patient_id, wrapped_dek, kek_id FROM binaries")
        ):
            if row.wrapped_dek is not None:
                context = binary_context(row.id, row.document_id, row.patient_id)
                found.append(
                    envelope.content_key(
                        session, row.patient_id, row.wrapped_dek, row.kek_id, context
                    )
                )
        for row in connection.execute(
            text(
                "SELECT document_id, version, patient_id, resource_dek, kek_id FROM document_versions"
            )
        ):
            if row.resource_dek is not None:
                context = version_context(row.document_id, row.version, row.patient_id)
                found.append(
                    envelope.content_key(
                        session, row.patient_id, row.resource_dek, row.kek_id, context
                    )
                )
        for row in connection.execute(
            text("SELECT id, version, resource_dek, kek_id FROM patients")
        ):
            context = patient_context(row.id, row.version)
            found.append(
                envelope.content_key(session, row.id, row.resource_dek, row.kek_id, context)
            )
    assert keks
    return found


def _every_bytea_value(engine: Engine) -> list[bytes]:
    with engine.connect() as connection:
        columns = connection.execute(
            text(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND data_type = 'bytea'"
            )
        ).all()
        values = []
        for table, column in columns:
            values.extend(
                bytes(value)
                for value in connection.scalars(
                    text(f'SELECT "{column}" FROM "{table}" WHERE "{column}" IS NOT NULL')
                )
            )
    return values
