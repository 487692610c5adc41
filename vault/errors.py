"""The one error hierarchy. Messages are shown to clients: never put health data in them."""

from __future__ import annotations


class VaultError(Exception):
    status_code = 500
    # FHIR OperationOutcome issue type (http://hl7.org/fhir/issue-type).
    issue_code = "exception"

    def __init__(self, message: str, *, expression: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression


class BadRequest(VaultError):
    status_code = 400
    issue_code = "invalid"


class InvalidResource(VaultError):
    """FHIR that does not validate or breaks an MHD/PDSm rule."""

    status_code = 422
    issue_code = "processing"


class Unauthenticated(VaultError):
    status_code = 401
    issue_code = "login"


class MissingToken(Unauthenticated):
    """No credentials at all: RFC 6750 says the challenge then carries no error code."""


class Forbidden(VaultError):
    """Only for actions on something the caller can already see; otherwise use NotFound."""

    status_code = 403
    issue_code = "forbidden"


class NotFound(VaultError):
    status_code = 404
    issue_code = "not-found"


class Conflict(VaultError):
    status_code = 409
    issue_code = "conflict"


class Gone(VaultError):
    status_code = 410
    issue_code = "deleted"


class PreconditionFailed(VaultError):
    status_code = 412
    issue_code = "conflict"


class PayloadTooLarge(VaultError):
    status_code = 413
    issue_code = "too-costly"


class UnsupportedMediaType(VaultError):
    status_code = 415
    issue_code = "not-supported"


class TooManyRequests(VaultError):
    status_code = 429
    issue_code = "throttled"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        # Whole seconds until the caller may try again, sent as Retry-After.
        self.retry_after = max(1, retry_after)


class ServiceUnavailable(VaultError):
    status_code = 503
    issue_code = "transient"


class IntegrityError(VaultError):
    """Stored ciphertext or keys do not match their record: refuse loudly, never return garbage."""

    status_code = 500
    issue_code = "exception"
