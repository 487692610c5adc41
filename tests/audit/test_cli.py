"""The ``vault audit`` commands: the contract (exit codes, what goes to stdout and stderr)
in a separate process as an operator runs it, the rest in process for speed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import select
from typer.testing import CliRunner

from tests.audit.conftest import activity, rebuild_tree, rehash_chain, tampering
from vault.audit import parallel
from vault.cli import app as cli
from vault.models import AuditCheckpoint, AuditEntry
from vault.settings import get_settings

VAULT = str(Path(sys.executable).with_name("vault"))


@pytest.fixture
def run(settings, monkeypatch):
    """``vault audit ...`` in this process, configured like the test app."""
    for name, value in _environment(settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(cli, ["audit", *args])

    yield invoke
    get_settings.cache_clear()


def _environment(settings) -> dict[str, str]:
    return {
        "VAULT_DATABASE_URL": settings.database_url,
        "VAULT_DATA_DIR": str(settings.data_dir),
        "VAULT_BASE_URL": settings.base_url,
        "VAULT_BLOB_STORE": settings.blob_store,
    }


def run_process(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **_environment(settings)}
    return subprocess.run(
        [VAULT, "audit", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_verify_exits_zero_when_intact_and_one_naming_the_first_failing_entry(
    client, tokens, services, settings
):
    patient_id, _ = activity(client, tokens, 1)
    made = run_process(settings, "checkpoint")
    intact = run_process(settings, "verify")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["treeSize"] > 0
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "audit log intact" in intact.stdout
    with services.session_factory() as session:
        victim = session.scalars(
            select(AuditEntry).where(AuditEntry.patient_id == patient_id).order_by(AuditEntry.id)
        ).all()[2]
    with tampering(services) as db:
        db.execute(
            AuditEntry.__table__.update()
            .where(AuditEntry.id == victim.id)
            .values(source_ip="10.9.9.9")
        )

    failed = run_process(settings, "verify")

    assert failed.returncode == 1
    assert failed.stdout.startswith(f"FAILED entry {victim.id} ")
    assert failed.stderr.startswith("error: ")


def test_verify_of_one_patient_fails_only_for_that_patient(client, tokens, services, run):
    patient_id, _ = activity(client, tokens, 1)
    other_id, _ = activity(client, tokens, 2)
    assert run("checkpoint").exit_code == 0
    with services.session_factory() as session:
        victim = session.scalars(
            select(AuditEntry).where(AuditEntry.patient_id == patient_id).order_by(AuditEntry.id)
        ).all()[2]
    with tampering(services) as db:
        db.execute(
            AuditEntry.__table__.update()
            .where(AuditEntry.id == victim.id)
            .values(source_ip="10.9.9.9")
        )

    own = run("verify", "--patient", patient_id)
    other = run("verify", "--patient", other_id)

    assert own.exit_code == 1
    assert own.stdout.startswith(f"FAILED entry {victim.id} ")
    assert other.exit_code == 0, other.stdout


def test_verify_holds_the_log_to_checkpoints_saved_outside(client, tokens, services, run, tmp_path):
    patient_id, _ = activity(client, tokens, 1)
    saved = tmp_path / "checkpoints.jsonl"
    saved.write_text(run("checkpoint").stdout)
    with tampering(services) as db:
        db.execute(AuditCheckpoint.__table__.delete())
        db.execute(AuditEntry.__table__.update().where(AuditEntry.id == 2).values(action="D"))
        rehash_chain(db, patient_id)
        rebuild_tree(db)
    assert run("verify").exit_code == 0
    garbage = tmp_path / "garbage.json"
    garbage.write_text("[1, 2]")

    assert run("verify", "--checkpoints", str(saved)).exit_code == 1
    refused = run("verify", "--checkpoints", str(garbage))
    assert refused.exit_code == 1
    assert "no signed checkpoints" in refused.stderr


def test_export_writes_every_entry_since_a_date_as_json_lines(client, tokens, services, run):
    _, ins_value = activity(client, tokens, 1)
    with services.session_factory() as session:
        count = len(session.scalars(select(AuditEntry.id)).all())

    everything = run("export", "--since", "2000-01-01")
    nothing = run("export", "--since", "2999-01-01T00:00:00+01:00")
    resumed = run("export", "--since", "2000-01-01", "--after-id", "3")
    wrong = run("export", "--since", "yesterday")

    lines = [json.loads(line) for line in everything.stdout.splitlines()]
    assert len(lines) == count
    assert [line["id"] for line in lines] == sorted(line["id"] for line in lines)
    assert {"entryHash", "prevHash", "chain", "seq", "actor", "tokenId"} <= set(lines[0])
    assert ins_value not in everything.stdout
    assert nothing.stdout == ""
    assert [json.loads(line)["id"] for line in resumed.stdout.splitlines()] == [
        line["id"] for line in lines if line["id"] > 3
    ]
    assert wrong.exit_code != 0


def test_public_key_prints_the_key_the_api_publishes(client, tokens, run):
    printed = run("public-key")
    assert printed.exit_code == 0
    served = client.get("/audit/public-key", headers=tokens.operator()).json()
    assert printed.stdout.strip() == served["verifierKey"]


def test_deliver_once_sends_what_is_due(client, tokens, run):
    activity(client, tokens, 1)
    delivered = run("deliver", "--once")
    again = run("deliver", "--once")
    assert delivered.exit_code == 0, delivered.output
    assert delivered.stdout.startswith("delivered 2,")
    assert again.stdout.startswith("delivered 0,")


def test_verify_with_workers_checks_the_chains_in_worker_processes(
    client, tokens, services, run, monkeypatch
):
    activity(client, tokens, 1)
    activity(client, tokens, 2)
    assert run("checkpoint").exit_code == 0
    monkeypatch.setattr(parallel, "PARALLEL_FROM", 0)
    started = []
    start = parallel._start
    monkeypatch.setattr(
        parallel, "_start", lambda job, keys: started.append(keys) or start(job, keys)
    )

    intact = run("verify", "--workers", "2")

    assert intact.exit_code == 0, intact.output
    assert "audit log intact" in intact.output
    assert len(started) == 2


def test_verify_says_where_the_next_one_may_start_and_verify_since_starts_there(
    client, tokens, run
):
    activity(client, tokens, 1)
    assert run("checkpoint").exit_code == 0
    full = run("verify")
    assert full.exit_code == 0, full.output
    size = int(re.search(r"--since (\d+)", full.stdout).group(1))
    activity(client, tokens, 2)
    assert run("checkpoint").exit_code == 0

    since = run("verify", "--since", str(size))

    assert since.exit_code == 0, since.output
    assert f"added after signed tree size {size}" in since.stdout
    assert int(re.search(r"--since (\d+)", since.stdout).group(1)) > size


def test_verify_since_a_size_never_signed_fails_and_says_why(client, tokens, run):
    activity(client, tokens, 1)
    assert run("checkpoint").exit_code == 0

    failed = run("verify", "--since", "3")

    assert failed.exit_code == 1
    assert "no checkpoint is signed at tree size 3" in failed.stdout


def test_verify_refuses_one_patient_and_since_together(run):
    refused = run("verify", "--since", "1", "--patient", "someone")

    assert refused.exit_code == 1
    assert "give one of them" in refused.stderr
