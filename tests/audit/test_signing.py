"""Checkpoint notes: C2SP signed notes with Ed25519, keys kept in the data dir or settings."""

from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vault.audit.checkpoints import (
    Checkpoint,
    checkpoint_body,
    open_checkpoint,
    parse_checkpoint_body,
)
from vault.audit.signing import KEY_FILE, NoteSigner, NoteVerifier, SignatureError, SigningKey

ORIGIN = "vault.example/audit"


def _signer() -> NoteSigner:
    return NoteSigner(ORIGIN, Ed25519PrivateKey.generate())


def _checkpoint(size: int = 7) -> Checkpoint:
    return Checkpoint(ORIGIN, size, bytes(range(32)), datetime(2026, 1, 2, 3, 4, 5, 6, UTC))


def test_a_signed_checkpoint_opens_with_its_key_and_reads_back_the_same():
    signer = _signer()
    note = signer.sign(checkpoint_body(_checkpoint()))
    assert open_checkpoint(note, [signer.verifier], ORIGIN) == _checkpoint()


def test_the_note_follows_the_c2sp_checkpoint_layout():
    note = _signer().sign(checkpoint_body(_checkpoint()))
    body, _, signature = note.partition("\n\n")
    assert body.split("\n") == [
        ORIGIN,
        "7",
        base64.b64encode(bytes(range(32))).decode(),
        "time 2026-01-02T03:04:05.000006Z",
    ]
    assert signature.startswith(f"\u2014 {ORIGIN} ")
    assert len(base64.b64decode(signature.split(" ")[2])) == 4 + 64


@pytest.mark.parametrize(
    "tamper",
    [
        lambda note: note.replace("\n7\n", "\n8\n"),
        lambda note: note.replace("time 2026", "time 2027"),
        lambda note: note[:-20] + ("A" if note[-20] != "A" else "B") + note[-19:],
    ],
    ids=["size", "time", "signature"],
)
def test_any_change_to_a_signed_note_breaks_it(tamper):
    signer = _signer()
    note = signer.sign(checkpoint_body(_checkpoint()))
    with pytest.raises(SignatureError):
        open_checkpoint(tamper(note), [signer.verifier], ORIGIN)


def test_a_note_signed_by_an_untrusted_key_is_refused():
    note = _signer().sign(checkpoint_body(_checkpoint()))
    with pytest.raises(SignatureError):
        open_checkpoint(note, [_signer().verifier], ORIGIN)


def test_a_checkpoint_of_another_log_is_refused():
    signer = NoteSigner("other.example/audit", Ed25519PrivateKey.generate())
    body = checkpoint_body(Checkpoint("other.example/audit", 1, bytes(32), datetime.now(UTC)))
    with pytest.raises(SignatureError):
        open_checkpoint(signer.sign(body), [signer.verifier], ORIGIN)


def test_a_verifier_key_round_trips_and_a_wrong_hash_is_refused():
    verifier = _signer().verifier
    assert NoteVerifier.parse(verifier.verifier_key) == verifier
    name, _, rest = verifier.verifier_key.partition("+")
    with pytest.raises(SignatureError):
        NoteVerifier.parse(f"{name}+00000000+{rest.partition('+')[2]}")


@pytest.mark.parametrize("body", ["no newline", "two\n\nparagraphs\n"])
def test_only_plain_line_bodies_are_signed(body):
    with pytest.raises(SignatureError):
        _signer().sign(body)


def test_malformed_checkpoint_bodies_are_refused():
    with pytest.raises(SignatureError):
        parse_checkpoint_body(f"{ORIGIN}\n-1\n{base64.b64encode(bytes(32)).decode()}\ntime x\n")


def test_the_key_is_created_once_in_the_data_dir_readable_only_by_its_owner(tmp_path):
    first = SigningKey(ORIGIN, None, tmp_path)
    assert first.verifier_if_present() is None
    verifier = first.signer().verifier
    mode = stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode)
    assert mode == 0o600
    again = SigningKey(ORIGIN, None, tmp_path)
    assert again.verifier_if_present() == verifier


def test_a_configured_key_is_used_as_pem_or_as_a_base64_seed(tmp_path):
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    seed = base64.b64encode(
        key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    ).decode()
    from_pem = SigningKey(ORIGIN, pem, tmp_path).signer().verifier
    from_seed = SigningKey(ORIGIN, seed, tmp_path).signer().verifier
    assert from_pem == from_seed
    assert not (tmp_path / KEY_FILE).exists()


def test_a_configured_key_that_is_not_ed25519_is_refused(tmp_path):
    with pytest.raises(SignatureError):
        SigningKey(ORIGIN, "bm90IGEga2V5", tmp_path).signer()
