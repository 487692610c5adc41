"""The token endpoint for professional software: SMART Backend Services.

``client_credentials`` with a ``private_key_jwt`` client assertion (RFC 7523), or HTTP Basic
with a client secret for development. Built on authlib's OAuth 2 authorization server; the
JWT checks are joserfc's, restricted to RS256/ES256, with the vault's clock skew, a short
assertion lifetime and a database-backed ``jti`` replay guard. No web framework in here:
the router hands over a ``TokenRequest`` and renders the ``TokenResponse``.

A client id that is not registered is answered as a registered client whose credentials
are wrong, at the same cost: it is authenticated against a stand-in whose secret and key no
one holds (the scrypt verification and the signature check run all the same), so the
endpoint tells no one which software is registered (docs/threat-model.md).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.jwt import JWTClaimsRegistry

from vault.db import Session, SessionFactory
from vault.errors import VaultError
from vault.identity.clients import (
    ClientRegistry,
    RegisteredClient,
    assertion_expiry,
    hash_secret,
    verify_secret,
)
from vault.identity.jwks import KeySource, StaticKeys
from vault.identity.principal import Role
from vault.identity.scopes import format_scope, grant, parse_scopes, scopes_for_role
from vault.identity.throttle import Throttle
from vault.identity.tokens import ALGORITHMS, EmbeddedIssuer

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# SMART Backend Services: the assertion's exp is no more than five minutes in the future.
MAX_ASSERTION_LIFETIME = 300
MAX_JTI_LENGTH = 256


@dataclass(frozen=True)
class TokenRequest:
    """The parts of an HTTP request the token endpoint reads."""

    method: str
    url: str
    headers: Mapping[str, str]
    form: Mapping[str, str]
    client_ip: str | None = None


@dataclass(frozen=True)
class TokenResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class StandIn:
    """Credentials no one holds: a secret drawn and forgotten, a public key whose private
    half is discarded. What an unknown client, or a client without the credentials it
    presents, is checked against, so that it fails exactly as a wrong guess does."""

    def __init__(self) -> None:
        self.secret_hash = hash_secret(secrets.token_urlsafe(32))
        private = ECKey.generate_key("P-256", private=True, auto_kid=True)
        self.keys: KeySource = StaticKeys(
            KeySet([ECKey.import_key(private.as_dict(private=False))])
        )

    def client(self, client_id: str) -> RegisteredClient:
        return RegisteredClient(
            client_id=client_id,
            name=None,
            jwks=None,
            jwks_url=None,
            secret_hash=self.secret_hash,
            scopes=(),
            on_behalf_of="",
        )


class TokenEndpoint:
    def __init__(
        self,
        issuer: EmbeddedIssuer,
        clients: ClientRegistry,
        session_factory: SessionFactory,
        *,
        token_url: str,
        token_ttl: int = 300,
        clock_skew: int = 30,
    ) -> None:
        self.issuer = issuer
        self.clients = clients
        self.session_factory = session_factory
        self.token_url = token_url
        self.token_ttl = token_ttl
        self.clock_skew = clock_skew
        self.stand_in = StandIn()

    def issue(self, request: TokenRequest, throttle: Throttle) -> TokenResponse:
        keys = [f"ip:{request.client_ip or 'unknown'}"]
        claimed = claimed_client_id(request)
        if claimed:
            keys.append(f"client:{claimed}")
        throttle.guard_authentication(keys)
        throttle.token_request(keys)
        response = self._issue(request)
        if response.body.get("error") == "invalid_client":
            throttle.failed_authentication(keys)
        return response

    def _issue(self, request: TokenRequest) -> TokenResponse:
        try:
            _basic_credentials(request.headers)
        except ValueError:
            return _error(InvalidClientError(status_code=401, description="Malformed credentials"))
        with self.session_factory() as session:
            server = _Server(self, session)
            try:
                response: TokenResponse = server.create_token_response(request)
            except OAuth2Error as error:
                # Raised while reading the request (plain HTTP to a non-loopback address).
                return _error(error)
            # Used assertion ids are kept whatever the outcome: each assertion is single-use.
            session.commit()
        return response


def claimed_client_id(request: TokenRequest) -> str | None:
    """Who the request says it is, before anything is verified: for throttling only."""
    try:
        basic = _basic_credentials(request.headers)
    except ValueError:
        return None
    if basic is not None:
        return basic[0][:128]
    assertion = request.form.get("client_assertion")
    if assertion:
        try:
            payload = assertion.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError, UnicodeDecodeError, RecursionError):
            return None
        subject = claims.get("sub") if isinstance(claims, dict) else None
        return subject[:128] if isinstance(subject, str) else None
    client_id = request.form.get("client_id")
    return client_id[:128] if client_id else None


def _basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """(id, secret) from HTTP Basic, None without Basic; ValueError when it is unreadable
    (authlib would fail on it with an error of its own)."""
    value = headers.get("authorization", "")
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise ValueError("unreadable Basic credentials") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise ValueError("Basic credentials without a secret")
    return client_id, secret


def invalid_request(description: str) -> TokenResponse:
    """For requests the router cannot even read (wrong media type, repeated parameters)."""
    return _error(InvalidRequestError(description=description))


def _error(error: OAuth2Error) -> TokenResponse:
    status, body, headers = error()
    return TokenResponse(status, dict(body), dict(headers))


class _Client(ClientMixin):  # type: ignore[misc]
    def __init__(
        self, registered: RegisteredClient, stand_in: StandIn, *, known: bool = True
    ) -> None:
        self.registered = registered
        self.stand_in = stand_in
        # False: no client has this id, and nothing this one presents ever authenticates.
        self.known = known
        self.client_id = registered.client_id

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        registered = self.registered.scopes
        if scope:
            requested = scopes_for_role(Role.SOFTWARE, parse_scopes(scope))
            granted = grant(requested, registered)
        else:
            granted = registered
        return " ".join(format_scope(item) for item in granted)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.known or self.registered.secret_hash is None:
            # The same scrypt work as a real check, and the same refusal.
            verify_secret(self.stand_in.secret_hash, client_secret)
            return False
        return self.registered.check_secret(client_secret)

    def public_keys(self, registry: ClientRegistry) -> KeySource:
        if not self.known or not self.registered.has_keys:
            return self.stand_in.keys
        return registry.keys(self.registered)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint != "token" or not self.known:
            return False
        if method == "private_key_jwt":
            return self.registered.has_keys
        if method == "client_secret_basic":
            return self.registered.secret_hash is not None
        return False

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, request: TokenRequest) -> None:
        super().__init__(method=request.method, uri=request.url, headers=_AuthHeaders(request))
        self.payload = BasicOAuth2Payload(dict(request.form))
        self._form = dict(request.form)

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _AuthHeaders(dict[str, str]):
    """authlib reads ``Authorization`` with that exact case."""

    def __init__(self, request: TokenRequest) -> None:
        super().__init__({key.lower(): value for key, value in request.headers.items()})
        if "authorization" in self:
            self["Authorization"] = self["authorization"]


class _ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt", "client_secret_basic"]

    def validate_requested_scope(self) -> None:
        requested = self.request.payload.scope
        if requested is not None and not self.client.get_allowed_scope(requested):
            raise InvalidScopeError(
                description="None of the requested scopes is registered for this client"
            )


class _PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, endpoint: TokenEndpoint, session: Session) -> None:
        super().__init__(validate_jti=True, leeway=endpoint.clock_skew)
        self._endpoint = endpoint
        self._session = session

    def get_audiences(self) -> list[str]:
        return [self._endpoint.token_url]

    def resolve_client_public_key(self, client: _Client) -> Callable[[Any], KeySet]:
        source = client.public_keys(self._endpoint.clients)

        def resolve(token: Any) -> KeySet:
            kid = token.headers().get("kid")
            return source.key_set(kid if isinstance(kid, str) else None)

        return resolve

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion, resolve_key, algorithms=ALGORITHMS
            ).claims
        except JoseError:
            raise InvalidClientError(
                description="The client assertion is not signed by a registered key"
            ) from None
        except (ValueError, TypeError, KeyError):
            raise InvalidClientError(description="Malformed client assertion") from None
        except VaultError:
            raise InvalidClientError(description="The client's keys cannot be fetched") from None
        self.verify_claims(claims)
        return claims

    def verify_claims(self, claims: dict[str, Any]) -> None:
        registry = JWTClaimsRegistry(
            leeway=self.leeway,
            iss={"essential": True},
            sub={"essential": True},
            aud={"essential": True, "values": self.get_audiences()},
            exp={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            claim = getattr(error, "claim", None) or "claims"
            raise InvalidClientError(
                description=f"The client assertion's {claim} is missing or invalid"
            ) from None
        if claims["iss"] != claims["sub"]:
            raise InvalidClientError(description="The client assertion's iss and sub differ")
        if claims["exp"] > time.time() + MAX_ASSERTION_LIFETIME + self.leeway:
            raise InvalidClientError(
                description="The client assertion lives longer than five minutes"
            )
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
            raise InvalidClientError(description="The client assertion's jti is invalid")
        if not self.validate_jti(claims, jti):
            raise InvalidClientError(description="The client assertion was already used")

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        expires = assertion_expiry(claims["exp"], self.leeway)
        return ClientRegistry.use_assertion(self._session, claims["sub"], jti, expires)


class _Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, endpoint: TokenEndpoint, session: Session) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._session = session
        self.register_grant(_ClientCredentials)
        self.register_client_auth_method("private_key_jwt", _PrivateKeyJwt(endpoint, session))
        self.register_token_generator("client_credentials", self._generate)

    def query_client(self, client_id: str) -> _Client | None:
        if not isinstance(client_id, str):
            return None
        stand_in = self._endpoint.stand_in
        registered = self._endpoint.clients.get(self._session, client_id)
        if registered is None:
            # Not "does not exist": checked, and refused, as a wrong credential is.
            return _Client(stand_in.client(client_id), stand_in, known=False)
        return _Client(registered, stand_in)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """Issued tokens are self-contained JWTs that expire within minutes: none is stored."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No listeners."""

    def create_oauth2_request(self, request: TokenRequest) -> _Request:
        return _Request(request)

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> TokenResponse:
        return TokenResponse(status, dict(body), dict(headers))

    def _generate(
        self,
        grant_type: str,
        client: _Client,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = False,
    ) -> dict[str, Any]:
        endpoint = self._endpoint
        if not client.known:
            # Unreachable (a stand-in never authenticates); kept as the last word.
            raise InvalidClientError(description="Unknown client")
        granted = client.get_allowed_scope(scope)
        token = endpoint.issuer.mint(
            Role.SOFTWARE.value,
            client.client_id,
            scope=granted,
            ttl=endpoint.token_ttl,
            on_behalf_of=client.registered.on_behalf_of,
            client_id=client.client_id,
        )
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": endpoint.token_ttl,
            "scope": granted,
        }
