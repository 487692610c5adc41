"""Several audit logs (docs/audit.md, "Several logs"): each chain belongs to one log, each
log has its own Merkle tree and signed checkpoints, and ``vault audit verify`` checks every
chain and every log's tree, naming the log of a tampered entry."""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from collections import Counter

import pytest
from alembic import command
from sqlalchemy import select, text

from tests.audit.conftest import read_record, rehash_chain, tampering
from tests.audit.test_cli import run  # noqa: F401 - the fixture
from tests.exports.test_export import _export, _verify
from tests.factories import create_patient, publish
from vault.access.journal import chain_number
from vault.audit import merkle, parallel
from vault.audit.checkpoints import log_origin, open_checkpoint
from vault.db import unit_of_work
from vault.errors import Conflict
from vault.migrations import alembic_config, upgrade
from vault.models import AuditChainHead, AuditCheckpoint, AuditEntry
from vault.services import Services

LOGS = 4
PATIENTS = [f"patient-{number:03d}" for number in range(40)]


def _configure(services: Services, logs: int) -> None:
    with unit_of_work(services.session_factory) as session:
        services.audit_log.tree.configure(session, logs)


def _append(services: Services, patients: list[str | None], rounds: int = 2) -> None:
    for _ in range(rounds):
        with unit_of_work(services.session_factory) as session:
            for patient in patients:
                services.audit.append(session, read_record(patient))


@pytest.fixture
def logs(services: Services) -> Services:
    """A vault with four audit logs and the entries of forty patients (and of no
    patient), every one taken into a signed checkpoint."""
    _configure(services, LOGS)
    _append(services, [*PATIENTS, None])
    services.audit_log.checkpoints.make(services.session_factory)
    return services


def _entries(services: Services) -> list[AuditEntry]:
    with services.session_factory() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_chains_spread_over_the_logs_each_in_one_log_for_good(logs):
    entries = _entries(logs)
    with logs.session_factory() as session:
        heads = {h.chain_key: h.log_id for h in session.scalars(select(AuditChainHead))}
        assert logs.audit_log.tree.logs(session) == LOGS

    assert set(heads) == {*PATIENTS, "-"}
    for key, log in heads.items():
        assert log == chain_number(key) % LOGS
    assert all(entry.log_id == heads[entry.chain_key] for entry in entries)
    per_log = Counter(entry.log_id for entry in entries)
    assert set(per_log) == set(range(LOGS))
    # Each log numbers its own leaves from 0, without gap.
    for log, count in per_log.items():
        leaves = sorted(e.leaf_index for e in entries if e.log_id == log)
        assert leaves == list(range(count))


def test_each_log_signs_its_own_tree_and_proves_its_entries(logs):
    checkpoints = logs.audit_log.checkpoints
    tree = logs.audit_log.tree
    entries = _entries(logs)
    with logs.session_factory() as session:
        for log in range(LOGS):
            row = checkpoints.latest(session, log)
            assert row is not None
            origin = log_origin(checkpoints.origin, LOGS, log)
            assert origin == f"{checkpoints.origin}/{log}"
            signed = open_checkpoint(row.note, checkpoints.verifiers(), origin)
            mine = [e for e in entries if e.log_id == log]
            assert signed.tree_size == row.tree_size == len(mine)
            assert signed.root_hash == tree.root(session, row.tree_size, log)
            leaves = [merkle.leaf_hash(e.entry_hash) for e in sorted(mine, key=_leaf)]
            assert merkle.root_of(leaves) == signed.root_hash
            for entry in mine:
                path = tree.inclusion_proof(session, _leaf(entry), row.tree_size, log)
                assert merkle.verify_inclusion(
                    _leaf(entry),
                    row.tree_size,
                    merkle.leaf_hash(entry.entry_hash),
                    path,
                    signed.root_hash,
                )


def _leaf(entry: AuditEntry) -> int:
    assert entry.leaf_index is not None
    return entry.leaf_index


def test_the_number_of_logs_is_fixed_once_the_log_holds_entries(logs):
    with pytest.raises(Conflict), unit_of_work(logs.session_factory) as session:
        logs.audit_log.tree.configure(session, 2)


@pytest.mark.parametrize("workers", ["in-process", "parallel"])
def test_verify_checks_every_chain_and_every_logs_tree(logs, workers, monkeypatch):
    if workers == "parallel":
        monkeypatch.setattr(parallel, "PARALLEL_FROM", 0)
        logs.audit_log.verifier.workers = 2
    report = logs.audit_log.verifier.verify(logs.session_factory)

    assert report.ok, [failure.describe() for failure in report.failures]
    entries = _entries(logs)
    assert report.entries == report.leaves == len(entries)
    assert report.chains == len(PATIENTS) + 1
    assert report.checkpoints == LOGS
    sizes = Counter(entry.log_id for entry in entries)
    assert report.signed_size == ",".join(str(sizes[log]) for log in range(LOGS))


def test_verify_since_checks_what_each_log_gained(logs):
    verifier = logs.audit_log.verifier
    full = verifier.verify(logs.session_factory)
    sizes = [int(size) for size in str(full.signed_size).split(",")]
    _append(logs, PATIENTS[:10], rounds=1)
    logs.audit_log.checkpoints.make(logs.session_factory)

    report = verifier.verify_since(logs.session_factory, sizes)

    assert report.ok, [failure.describe() for failure in report.failures]
    assert report.entries == 10
    assert verifier.verify_since(logs.session_factory, sizes[0]).first_failure is not None


def test_an_entry_edited_in_one_log_is_found_and_named_with_its_log(logs):
    entries = _entries(logs)
    victim = next(e for e in entries if e.log_id == 2 and e.chain_key != "-")
    with tampering(logs) as db:
        db.execute(
            AuditEntry.__table__.update()
            .where(AuditEntry.id == victim.id)
            .values(resource_id="another-document")
        )

    failure = logs.audit_log.verifier.verify(logs.session_factory).first_failure

    assert failure is not None
    assert failure.entry_id == victim.id
    assert "content does not match its hash" in failure.reason


def test_a_chain_rewritten_and_rehashed_is_found_by_its_logs_tree(logs):
    entries = _entries(logs)
    victim = next(e for e in entries if e.log_id == 3 and e.chain_key != "-")
    with tampering(logs) as db:
        db.execute(
            AuditEntry.__table__.update().where(AuditEntry.id == victim.id).values(outcome="denied")
        )
        rehash_chain(db, victim.chain_key)

    failure = logs.audit_log.verifier.verify(logs.session_factory).first_failure

    assert failure is not None
    assert failure.entry_id == victim.id
    assert failure.log_id == 3
    assert failure.leaf_index == victim.leaf_index
    assert f"log 3 leaf {victim.leaf_index}" in failure.describe()


def test_a_checkpoint_of_one_log_does_not_pass_for_another(logs):
    with logs.session_factory() as session:
        notes = {
            log: row.note
            for log in range(LOGS)
            if (row := logs.audit_log.checkpoints.latest(session, log)) is not None
        }
    with tampering(logs) as db:
        db.execute(
            AuditCheckpoint.__table__.update()
            .where(AuditCheckpoint.log_id == 1)
            .values(note=notes[0])
        )

    report = logs.audit_log.verifier.verify(logs.session_factory)

    assert any("differs from its note" in failure.reason for failure in report.failures)


def test_the_commands_set_the_number_of_logs_and_verify_them(services, run):  # noqa: F811
    assert run("logs").stdout.strip() == "1"
    assert run("logs", "3").stdout.strip() == "3"
    _append(services, [*PATIENTS[:12], None])
    signed = run("checkpoint")
    assert signed.exit_code == 0
    notes = [json.loads(line)["note"] for line in signed.stdout.splitlines()]
    origin = services.audit_log.checkpoints.origin
    assert [note.split("\n")[0] for note in notes] == [f"{origin}/{log}" for log in range(3)]

    refused = run("logs", "2")
    full = run("verify")

    assert refused.exit_code == 1
    assert full.exit_code == 0, full.output
    sizes = re.search(r"--since (\d+,\d+,\d+)", full.stdout)
    assert sizes is not None
    _append(services, PATIENTS[:3], rounds=1)
    assert run("checkpoint").exit_code == 0
    since = run("verify", "--since", sizes.group(1))
    assert since.exit_code == 0, since.output


def test_the_migration_keeps_the_log_as_log_zero_and_goes_back(services, database_url):
    """Entries, tree and checkpoints written before the migration verify after it, and
    those written after verify once migrated back."""
    _append(services, PATIENTS[:5])
    services.audit_log.checkpoints.make(services.session_factory)
    services.engine.dispose()
    config = alembic_config(database_url)
    try:
        command.downgrade(config, "f4b2d8e61a09")
        with services.engine.connect() as connection:
            count = connection.execute(text("SELECT count(*) FROM audit_entries")).scalar()
            assert count == 10
            head = connection.execute(text("SELECT id, size FROM audit_tree_head")).all()
            assert [tuple(row) for row in head] == [(1, 10)]
    finally:
        upgrade(database_url)
    report = services.audit_log.verifier.verify(services.session_factory)
    assert report.ok, [failure.describe() for failure in report.failures]
    assert (report.entries, report.leaves, report.checkpoints) == (10, 10, 1)
    _append(services, PATIENTS[:5], rounds=1)
    services.audit_log.checkpoints.make(services.session_factory)
    assert services.audit_log.verifier.verify(services.session_factory).ok


def test_the_integrity_api_serves_each_logs_checkpoints_and_proves_an_entry_in_its_log(
    logs, client, tokens
):
    headers = tokens.operator()
    entries = _entries(logs)
    victim = next(e for e in entries if e.log_id == 2)
    checkpoints = logs.audit_log.checkpoints

    latest = client.get("/audit/checkpoints/latest?log=2", headers=headers).json()
    first = client.get("/audit/checkpoints/latest", headers=headers).json()
    proof = client.get(f"/audit/proofs/inclusion?entry={victim.id}", headers=headers).json()

    signed = open_checkpoint(
        latest["note"], checkpoints.verifiers(), log_origin(checkpoints.origin, LOGS, 2)
    )
    assert first["note"].startswith(f"{checkpoints.origin}/0\n")
    assert (proof["leafIndex"], proof["treeSize"]) == (victim.leaf_index, signed.tree_size)
    path = [base64.b64decode(node) for node in proof["auditPath"]]
    assert merkle.verify_inclusion(
        _leaf(victim), signed.tree_size, merkle.leaf_hash(victim.entry_hash), path, signed.root_hash
    )
    listed = client.get("/audit/checkpoints?log=2", headers=headers).json()["checkpoints"]
    assert [item["note"] for item in listed] == [latest["note"]]


def test_the_integrity_api_answers_404_for_a_log_the_vault_does_not_keep(logs, client, tokens):
    """Asking a log that does not exist is an error, not an empty log: a verifier who
    mistyped the log number would otherwise believe it had checked one."""
    headers = tokens.operator()
    victim = next(e for e in _entries(logs) if e.log_id == 2)
    for path in (
        "/audit/checkpoints",
        "/audit/checkpoints/latest",
        "/audit/checkpoints/1",
        f"/audit/proofs/inclusion?entry={victim.id}",
        "/audit/proofs/inclusion?leaf=0",
        "/audit/proofs/consistency?first=1",
    ):
        separator = "&" if "?" in path else "?"
        missing = client.get(f"{path}{separator}log={LOGS}", headers=headers)
        assert missing.status_code == 404, (path, missing.text)
        outcome = missing.json()
        assert outcome["resourceType"] == "OperationOutcome", path
        assert outcome["issue"][0]["code"] == "not-found", path
        assert "No such audit log" in outcome["issue"][0]["diagnostics"], path
    # Each log that is kept still answers, the last one included.
    kept = client.get(f"/audit/checkpoints?log={LOGS - 1}", headers=headers)
    assert kept.status_code == 200
    assert kept.json()["checkpoints"]


def test_a_vault_with_one_log_answers_404_for_log_1(services, client, tokens):
    headers = tokens.operator()
    assert client.get("/audit/checkpoints?log=0", headers=headers).status_code == 200
    missing = client.get("/audit/checkpoints?log=1", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"


def test_an_export_proves_the_history_in_its_patients_log(services, client, tokens, tmp_path):
    _configure(services, LOGS)
    for seed in range(1, 20):
        patient_id, ins_value = create_patient(client, tokens, seed)
        if chain_number(patient_id) % LOGS != 0:
            break
    log = chain_number(patient_id) % LOGS
    assert log != 0
    publish(client, tokens.professional(), patient_id, b"a report")

    _, content = _export(client, services, tokens.patient(ins_value))

    archive = zipfile.ZipFile(io.BytesIO(content))
    note = archive.read("history/checkpoint.txt").decode()
    assert note.startswith(f"{services.audit_log.checkpoints.origin}/{log}\n")
    checked = _verify(tmp_path, content)
    assert checked.exit_code == 0, checked.output
