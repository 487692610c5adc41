"""A real SMTP server (aiosmtpd) on a free loopback port, for the e-mail tests: plain, or
STARTTLS with a self-signed certificate made here and AUTH required."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key; the certificate is also the
    CA file the client trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Mailbox:
    """The handler: keeps what it accepts; refuses recipients it is told to refuse."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], bytes]] = []
        self.refuse_with: str | None = None
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if self.refuse_with:
            return self.refuse_with
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.lock:
            self.received.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return [
                message_from_bytes(raw, policy=policy.default)  # type: ignore[misc]
                for _, raw in self.received
            ]

    def raw(self) -> list[bytes]:
        with self.lock:
            return [raw for _, raw in self.received]


class SmtpServer:
    def __init__(
        self,
        *,
        tls: tuple[Path, Path] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.mailbox = Mailbox()
        self.port = free_port()
        self.logins: list[str] = []
        parameters: dict[str, object] = {}
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            parameters.update(tls_context=context, require_starttls=True)
        if credentials is not None:
            expected = (credentials[0].encode(), credentials[1].encode())

            def authenticate(server, session, envelope, mechanism, auth_data):
                ok = (
                    isinstance(auth_data, LoginPassword)
                    and (
                        auth_data.login,
                        auth_data.password,
                    )
                    == expected
                )
                if ok:
                    self.logins.append(auth_data.login.decode())
                return AuthResult(success=ok, handled=False)

            parameters.update(authenticator=authenticate, auth_required=True)
        self.controller = Controller(
            self.mailbox, hostname="127.0.0.1", port=self.port, **parameters
        )

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.controller.stop()
