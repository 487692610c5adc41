"""The ``pkcs11:`` key provider: master keys generated inside an HSM that never leave it.

The URL follows RFC 7512::

    pkcs11:token=vault;object=vault?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/secrets/hsm-pin

- ``token`` (the token label) and/or ``serial`` choose the token;
- ``object`` is the prefix of the labels of this vault's keys (default ``vault``), so that
  several vaults, or a vault and other applications, can share a token;
- ``module-path`` (required) is the PKCS#11 library; also accepted among the path attributes;
- the user PIN comes from ``VAULT_PKCS11_PIN`` if set, else ``pin-source`` (a ``file:`` URI
  or a path), else ``pin-value``.

Objects the vault keeps in the token (see docs/keys.md):

- ``<object>-master-<seq>-<random>``: AES-256 master keys, CKA_LABEL = CKA_ID = the key id,
  sensitive and non-extractable, usable only to encrypt and decrypt. The current one is the
  highest ``seq``: creating one object is the only atomic step a token offers, so rotation
  is exactly that and needs no separate "current" pointer that could disagree with it.
- ``<object>-index``: a 256-bit generic secret used only for CKM_SHA256_HMAC (blind indexes).

Wrapping is AES-256-GCM computed by the token (C_Encrypt with CKM_AES_GCM), with the master
key id and the caller's context as associated data; the patient keys it wraps are plain
32-byte values to the token, never token objects.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlparse

import pkcs11
from pkcs11 import Attribute, GCMParams, KeyType, Mechanism, ObjectClass
from pkcs11 import Session as P11Session
from pkcs11 import Token as P11Token
from pkcs11.exceptions import (
    DataLenRange,
    DeviceError,
    DeviceRemoved,
    EncryptedDataInvalid,
    EncryptedDataLenRange,
    GeneralError,
    KeyHandleInvalid,
    MultipleTokensReturned,
    NoSuchToken,
    ObjectHandleInvalid,
    PinIncorrect,
    PinLocked,
    PKCS11Error,
    SessionClosed,
    SessionHandleInvalid,
    TokenNotPresent,
    UserAlreadyLoggedIn,
    UserNotLoggedIn,
)

from vault.errors import IntegrityError, VaultError
from vault.storage.keys.provider import KeyProviderError

# Separates a master key's id from the day it was made in its CKA_ID.
MADE_ON = "@"

FORMAT_VERSION = b"\x01"
NONCE_BYTES = 12
KEY_BITS = 256
DEFAULT_PREFIX = "vault"

_PATH_ATTRIBUTES = {"token", "serial", "object", "module-path"}
_QUERY_ATTRIBUTES = {"module-path", "pin-source", "pin-value"}
_PREFIX = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_REQUIRED_MECHANISMS = {
    Mechanism.AES_KEY_GEN,
    Mechanism.AES_GCM,
    Mechanism.GENERIC_SECRET_KEY_GEN,
    Mechanism.SHA256_HMAC,
}
# Errors after which a session (or the login it relied on) cannot be trusted any more.
_SESSION_LOST = (
    SessionHandleInvalid,
    SessionClosed,
    DeviceRemoved,
    DeviceError,
    TokenNotPresent,
    UserNotLoggedIn,
)
# What tokens answer when GCM authentication fails (SoftHSM2 says CKR_GENERAL_ERROR).
_DOES_NOT_AUTHENTICATE = (GeneralError, EncryptedDataInvalid, EncryptedDataLenRange, DataLenRange)
# Attributes of every key the vault creates: secret forever, one purpose each.
_LOCKED_DOWN = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}


class _TokenKey(Protocol):
    """What the vault does with a key object (python-pkcs11 composes these per key)."""

    def encrypt(self, data: bytes, **kwargs: Any) -> bytes: ...
    def decrypt(self, data: bytes, **kwargs: Any) -> bytes: ...
    def sign(self, data: bytes, **kwargs: Any) -> bytes: ...
    def destroy(self) -> None: ...
    def __getitem__(self, attribute: Attribute) -> Any: ...


@dataclass(frozen=True)
class Pkcs11Url:
    module_path: str
    token_label: str | None = None
    token_serial: str | None = None
    prefix: str = DEFAULT_PREFIX
    pin_source: str | None = None
    pin_value: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> Pkcs11Url:
        scheme, _, rest = url.partition(":")
        if scheme != "pkcs11":
            raise VaultError("A PKCS#11 key provider URL starts with pkcs11:")
        path, _, query = rest.partition("?")
        found: dict[str, str] = {}
        for part, allowed in [
            *((item, _PATH_ATTRIBUTES) for item in path.split(";")),
            *((item, _QUERY_ATTRIBUTES) for item in query.split("&")),
        ]:
            if not part:
                continue
            name, equals, value = part.partition("=")
            # Never echo a value: pin-value is a secret.
            if not equals or name not in allowed:
                raise VaultError(f"Unsupported attribute {name!r} in the pkcs11: URL")
            if name in found:
                raise VaultError(f"Attribute {name!r} appears twice in the pkcs11: URL")
            found[name] = unquote(value)
        if not found.get("module-path"):
            raise VaultError("The pkcs11: URL needs module-path=/path/to/the/pkcs11/library.so")
        if not found.get("token") and not found.get("serial"):
            raise VaultError("The pkcs11: URL needs token=<label> or serial=<serial>")
        prefix = found.get("object", DEFAULT_PREFIX)
        if not _PREFIX.match(prefix):
            raise VaultError("object= in the pkcs11: URL must be 1-64 letters, digits, . _ or -")
        return cls(
            module_path=found["module-path"],
            token_label=found.get("token"),
            token_serial=found.get("serial"),
            prefix=prefix,
            pin_source=found.get("pin-source"),
            pin_value=found.get("pin-value"),
        )

    def pin(self, given: str | None) -> str:
        if given:
            return given
        if self.pin_source:
            parsed = urlparse(self.pin_source)
            location = Path(unquote(parsed.path) if parsed.scheme == "file" else self.pin_source)
            try:
                return location.read_text().rstrip("\r\n")
            except OSError as error:
                raise KeyProviderError(
                    f"Cannot read the PKCS#11 PIN from pin-source ({error.strerror})"
                ) from None
        if self.pin_value:
            return self.pin_value
        raise VaultError("No PKCS#11 PIN: set VAULT_PKCS11_PIN or pin-source= in the URL")


@dataclass
class _OpenSession:
    session: P11Session
    generation: int
    keys: dict[str, _TokenKey] = field(default_factory=dict)


# python-pkcs11 initialises every library with C_Initialize(NULL), which tells the library
# that the application will not call it from several threads at once; SoftHSM2 then takes
# no locks of its own and crashes if it is. So every call into one library, whatever the
# session or token, goes through that library's lock.
_library_locks: dict[str, threading.RLock] = {}
_tokens: dict[tuple[str, str], _LoggedInToken] = {}
_registry_lock = threading.Lock()


def _library_lock(module_path: str) -> threading.RLock:
    with _registry_lock:
        return _library_locks.setdefault(module_path, threading.RLock())


class _LoggedInToken:
    """One token, logged in once per process and shared by every provider that uses it.

    PKCS#11 login state belongs to the application, not to a session: closing a logged-in
    session would log every other session out. So the session is never closed; if the token
    drops it (HSM restart), the next call opens and logs in again.
    """

    def __init__(self, token: P11Token, pin: str, lock: threading.RLock) -> None:
        self.token = token
        self._pin_digest = hashlib.sha256(pin.encode()).digest()
        self._pin = pin
        self._lock = lock
        self._open: _OpenSession | None = None
        self.generation = 0
        with self._lock:
            self._open = self._log_in()

    def same_pin(self, pin: str) -> bool:
        return hmac.compare_digest(self._pin_digest, hashlib.sha256(pin.encode()).digest())

    def _log_in(self) -> _OpenSession:
        try:
            try:
                session = self.token.open(rw=True, user_pin=self._pin)
            except UserAlreadyLoggedIn:
                # The token kept this process's login across a lost session.
                session = self.token.open(rw=True)
        except (PinIncorrect, PinLocked) as error:
            raise KeyProviderError(
                f"The PKCS#11 token refused the PIN ({type(error).__name__})"
            ) from None
        except PKCS11Error as error:
            raise KeyProviderError(
                f"Cannot log in to the PKCS#11 token ({type(error).__name__})"
            ) from None
        return _OpenSession(session, self.generation)

    def forget_handles(self) -> None:
        """After a key is destroyed: cached object handles must be looked up again."""
        with self._lock:
            self.generation += 1

    @contextmanager
    def session(self) -> Iterator[_OpenSession]:
        with self._lock:
            if self._open is None:
                self._open = self._log_in()
            current = self._open
            if current.generation != self.generation:
                current.keys.clear()
                current.generation = self.generation
            try:
                yield current
            except _SESSION_LOST as error:
                self._open = None
                raise KeyProviderError(
                    f"The PKCS#11 token is unavailable ({type(error).__name__})"
                ) from None
            except PKCS11Error as error:
                raise KeyProviderError(
                    f"The PKCS#11 token failed an operation ({type(error).__name__})"
                ) from None


def _open_token(url: Pkcs11Url, pin: str) -> _LoggedInToken:
    if not Path(url.module_path).is_file():
        raise VaultError(f"PKCS#11 module {url.module_path} does not exist")
    lock = _library_lock(url.module_path)
    query: dict[str, Any] = {}
    if url.token_label:
        query["token_label"] = url.token_label
    if url.token_serial:
        query["token_serial"] = url.token_serial
    with lock:
        try:
            token = pkcs11.lib(url.module_path).get_token(**query)
            mechanisms = set(token.slot.get_mechanisms())
        except NoSuchToken:
            raise KeyProviderError("No PKCS#11 token matches the pkcs11: URL") from None
        except MultipleTokensReturned:
            raise VaultError("Several PKCS#11 tokens match the pkcs11: URL; add serial=") from None
        except PKCS11Error as error:
            raise KeyProviderError(
                f"Cannot reach the PKCS#11 token ({type(error).__name__})"
            ) from None
        missing = _REQUIRED_MECHANISMS - mechanisms
        if missing:
            names = ", ".join(sorted(f"CKM_{mechanism.name}" for mechanism in missing))
            raise VaultError(f"The PKCS#11 token lacks mechanisms the vault needs: {names}")
        identity = (url.module_path, token.serial.hex() if token.serial else token.label)
        shared = _tokens.get(identity)
        if shared is None:
            shared = _tokens[identity] = _LoggedInToken(token, pin, lock)
        elif not shared.same_pin(pin):
            raise KeyProviderError("A different PIN is already logged in to this PKCS#11 token")
    return shared


def _master_key_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(prefix)}-master-(\d{{6,}})-[0-9a-f]{{8}}\Z")


class Pkcs11KeyProvider:
    def __init__(self, token: _LoggedInToken, prefix: str = DEFAULT_PREFIX) -> None:
        self._token = token
        self.prefix = prefix
        self._pattern = _master_key_pattern(prefix)
        self._index_label = f"{prefix}-index"
        with self._token.session() as held:
            if not self._master_keys(held):
                self._create_master_key(held, 1)
            self._index_key(held)

    @classmethod
    def from_url(cls, url: str, pin: str | None) -> Pkcs11KeyProvider:
        parsed = Pkcs11Url.parse(url)
        return cls(_open_token(parsed, parsed.pin(pin)), parsed.prefix)

    # -- master keys ----------------------------------------------------------------

    def _master_keys(self, held: _OpenSession) -> list[tuple[int, str]]:
        """(sequence, id) of this vault's master keys, oldest first."""
        found = []
        for key in held.session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES}
        ):
            label = str(key[Attribute.LABEL] or "")
            matched = self._pattern.match(label)
            if matched:
                found.append((int(matched.group(1)), label))
        return sorted(found)

    def _current(self, held: _OpenSession) -> str:
        keys = self._master_keys(held)
        if not keys:
            raise KeyProviderError("The PKCS#11 token holds no master key of this vault")
        return keys[-1][1]

    def _create_master_key(self, held: _OpenSession, sequence: int) -> str:
        key_id = f"{self.prefix}-master-{sequence:06d}-{secrets.token_hex(4)}"
        held.session.generate_key(
            KeyType.AES,
            KEY_BITS,
            label=key_id,
            # The id also carries the day the key was made: retirement tells from its
            # successor's when every backup that still needed a key has expired. (Not in
            # CKA_START_DATE, which SoftHSM2 stores but will not read back.)
            id=f"{key_id}{MADE_ON}{datetime.now(UTC).date().isoformat()}".encode(),
            store=True,
            template={
                **_LOCKED_DOWN,
                Attribute.ENCRYPT: True,
                Attribute.DECRYPT: True,
                Attribute.SIGN: False,
                Attribute.VERIFY: False,
            },
        )
        return key_id

    def _master_key(self, held: _OpenSession, key_id: str) -> _TokenKey | None:
        cached = held.keys.get(key_id)
        if cached is not None:
            return cached
        if not self._pattern.match(key_id):
            return None
        for key in held.session.get_objects(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.AES,
                Attribute.LABEL: key_id,
            }
        ):
            found = cast(_TokenKey, key)
            held.keys[key_id] = found
            return found
        return None

    def current_master_key_id(self) -> str:
        # Read from the token each time: another process (``vault keys rotate``) may have
        # rotated since, and new patient keys must go under the newest master key.
        with self._token.session() as held:
            return self._current(held)

    def master_key_ids(self) -> list[str]:
        with self._token.session() as held:
            return [key_id for _, key_id in self._master_keys(held)]

    def master_key_created_at(self, master_key_id: str) -> datetime | None:
        if not self._pattern.match(master_key_id):
            return None
        with self._token.session() as held:
            for key in held.session.get_objects(
                {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: master_key_id}
            ):
                _, marked, made = (
                    bytes(key[Attribute.ID]).decode(errors="replace").partition(MADE_ON)
                )
                if not marked:
                    return None  # made before keys carried their day
                try:
                    day = date.fromisoformat(made)
                except ValueError:
                    return None
                # The end of that day: the latest it can have been made, so that a wait
                # counted from it is never short.
                return datetime.combine(day + timedelta(days=1), time.min, UTC)
        return None

    def wrap(self, key: bytes, context: bytes) -> tuple[str, bytes]:
        # Random 96-bit nonces are safe here: a master key wraps one key per patient key and
        # per rotation, many orders of magnitude below GCM's 2^32 random-nonce bound.
        nonce = os.urandom(NONCE_BYTES)
        with self._token.session() as held:
            key_id = self._current(held)
            master = self._master_key(held, key_id)
            if master is None:
                raise KeyProviderError("The current master key vanished from the PKCS#11 token")
            sealed = master.encrypt(
                key,
                mechanism=Mechanism.AES_GCM,
                mechanism_param=GCMParams(nonce, _aad(key_id, context)),
            )
        return key_id, FORMAT_VERSION + nonce + bytes(sealed)

    def unwrap(self, master_key_id: str, wrapped: bytes, context: bytes) -> bytes:
        if len(wrapped) <= 1 + NONCE_BYTES or wrapped[:1] != FORMAT_VERSION:
            raise IntegrityError("A wrapped key is malformed")
        nonce, sealed = wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :]
        params = GCMParams(nonce, _aad(master_key_id, context))
        with self._token.session() as held:
            for attempt in range(2):
                master = self._master_key(held, master_key_id)
                if master is None:
                    raise IntegrityError(
                        "A key needed to decrypt this record is no longer available"
                    )
                try:
                    return bytes(
                        master.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=params)
                    )
                except (KeyHandleInvalid, ObjectHandleInvalid):
                    # Destroyed by another process: look it up once more, then give up.
                    held.keys.pop(master_key_id, None)
                    if attempt:
                        raise IntegrityError(
                            "A key needed to decrypt this record is no longer available"
                        ) from None
                except _DOES_NOT_AUTHENTICATE:
                    raise IntegrityError("A wrapped key does not authenticate") from None
        raise IntegrityError("A key needed to decrypt this record is no longer available")

    def rotate(self) -> str:
        with self._token.session() as held:
            keys = self._master_keys(held)
            return self._create_master_key(held, keys[-1][0] + 1 if keys else 1)

    def retire(self, master_key_id: str) -> None:
        with self._token.session() as held:
            if master_key_id == self._current(held):
                raise VaultError("The current master key cannot be retired")
            if not self._pattern.match(master_key_id):
                raise VaultError("Not a master key of this vault")
            for key in list(
                held.session.get_objects(
                    {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: master_key_id}
                )
            ):
                key.destroy()
        self._token.forget_handles()

    # -- blind index ----------------------------------------------------------------

    def _index_key(self, held: _OpenSession) -> _TokenKey:
        cached = held.keys.get(self._index_label)
        if cached is not None:
            return cached
        candidates = self._index_keys(held)
        if not candidates:
            held.session.generate_key(
                KeyType.GENERIC_SECRET,
                KEY_BITS,
                label=self._index_label,
                id=f"{self._index_label}-{secrets.token_hex(8)}".encode(),
                store=True,
                template={
                    **_LOCKED_DOWN,
                    Attribute.SIGN: True,
                    Attribute.VERIFY: False,
                    Attribute.ENCRYPT: False,
                    Attribute.DECRYPT: False,
                },
            )
            candidates = self._index_keys(held)
        # Two processes starting on an empty token at once may each create one; every
        # process then picks the same (lowest CKA_ID) and keeps looking until one is left.
        if len(candidates) == 1:
            held.keys[self._index_label] = candidates[0][1]
        return candidates[0][1]

    def _index_keys(self, held: _OpenSession) -> list[tuple[bytes, _TokenKey]]:
        found = []
        for key in held.session.get_objects(
            {
                Attribute.CLASS: ObjectClass.SECRET_KEY,
                Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                Attribute.LABEL: self._index_label,
            }
        ):
            found.append((bytes(key[Attribute.ID]), cast(_TokenKey, key)))
        return sorted(found, key=lambda item: item[0])

    def blind_index(self, purpose: str, value: bytes) -> bytes:
        # The token MACs a digest of the value, not the value: a document's content can be
        # tens of MB and should not cross to a network HSM. HMAC(k, SHA-256(m)) stays a PRF
        # of m because SHA-256 is collision resistant.
        message = purpose.encode() + b"\x00" + hashlib.sha256(value).digest()
        with self._token.session() as held:
            key = self._index_key(held)
            return bytes(key.sign(message, mechanism=Mechanism.SHA256_HMAC))

    def check(self) -> None:
        with self._token.session() as held:
            self._current(held)


def _aad(master_key_id: str, context: bytes) -> bytes:
    return master_key_id.encode() + b"\x00" + context
