"""The embedded SQLite store (the README's first command) does e-mail and exports too: an
address confirmed and an e-mail sent to a real SMTP server, an export built, downloaded and
verified."""

from __future__ import annotations

import io
import zipfile

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.factories import DOCTOR, Tokens, create_patient, publish
from tests.notifications.conftest import SENDER, confirmed_address, plain_settings
from tests.notifications.smtp_server import SmtpServer
from vault.api.app import create_app
from vault.audit.delivery import DeliveryWorker, LogSender
from vault.cli import app as cli
from vault.migrations import upgrade
from vault.notifications import templates
from vault.notifications.mail import SmtpMailer
from vault.notifications.outbox import EmailWorker, Links, enqueue_notifications
from vault.services import build_services
from vault.services.exports import export_worker
from vault.settings import Settings


def test_email_and_exports_work_on_the_embedded_sqlite_store(tmp_path):
    url = f"sqlite:///{tmp_path}/vault.db"
    upgrade(url)
    settings = Settings(database_url=url, data_dir=tmp_path, base_url="http://testserver")
    services = build_services(settings)
    try:
        tokens = Tokens(services.issuer)
        with SmtpServer() as smtp, TestClient(create_app(settings, services)) as client:
            emails = EmailWorker(
                services.session_factory,
                services.notifications.contacts,
                SmtpMailer(plain_settings(smtp)),
                Links("http://testserver"),
                sender=SENDER,
            )
            patient_id, ins_value = create_patient(client, tokens, seed=81)
            own = tokens.patient(ins_value)
            confirmed_address(client, own, patient_id, emails, smtp)
            content = b"%PDF-1.7 sqlite"
            publish(client, tokens.professional(DOCTOR), patient_id, content)
            DeliveryWorker(
                services.session_factory, LogSender(), fan_out=enqueue_notifications
            ).run_once()
            assert emails.run_once().sent == 1
            subject = smtp.mailbox.messages()[-1]["Subject"]
            assert subject == templates.TEMPLATES["new-document"].subject

            asked = client.post("/api/patients/me/exports", headers=own)
            assert asked.status_code == 202
            assert export_worker(services).run_once().built == 1
            path = asked.headers["Location"].removeprefix("http://testserver")
            archive = client.get(path + "/archive", headers=own)
            assert archive.status_code == 200
            names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
            document = next(name for name in names if name.startswith("documents/"))
            assert zipfile.ZipFile(io.BytesIO(archive.content)).read(document) == content
            (tmp_path / "export.zip").write_bytes(archive.content)
            verified = CliRunner().invoke(
                cli, ["audit", "verify-export", str(tmp_path / "export.zip")]
            )
            assert verified.exit_code == 0, verified.output
    finally:
        services.close()
