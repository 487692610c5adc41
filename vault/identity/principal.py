from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from vault.identity.scopes import Scope


class Role(StrEnum):
    PATIENT = "patient"
    PROFESSIONAL = "professional"
    CAREGIVER = "caregiver"
    SOFTWARE = "software"
    OPERATOR = "operator"


IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
INS_NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
INS_NIR_TEST_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"
INS_SYSTEMS = frozenset({INS_NIR_SYSTEM, INS_NIR_TEST_SYSTEM})


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as every service receives it."""

    role: Role
    # INS for patients, IDNPS for professionals, the account id for caregivers,
    # the client id for software, the operator's login for operators.
    subject: str
    scopes: tuple[Scope, ...] = ()
    on_behalf_of: str | None = None
    client_id: str | None = None
    token_id: str | None = None
    profession: str | None = None
    specialty: str | None = None
    issuer: str | None = None
    source_ip: str | None = field(default=None, compare=False)
    # The display name the issuer vouched for (OIDC ``name``), when its token carries one:
    # shown to the patient beside a delegation a caregiver accepted, never logged.
    name: str | None = field(default=None, compare=False, repr=False)

    @property
    def acting_professional(self) -> str | None:
        """The IDNPS whose rights apply: the professional, or the one software acts for."""
        if self.role is Role.PROFESSIONAL:
            return self.subject
        if self.role is Role.SOFTWARE:
            return self.on_behalf_of
        return None


def normalise_professional_id(system: str | None, value: str) -> str:
    """IDNPS for an RPPS holder is ``8`` + the 11-digit RPPS: both name the same person."""
    if system == RPPS_SYSTEM and len(value) == 11 and value.isdigit():
        return "8" + value
    return value
