"""INS (Identifiant National de Santé) form and key checks.

An INS-NIR is 13 characters (sex, year, month, department -- digits, or 2A/2B for
Corsica --, commune, order number) followed by a 2-digit key: 97 - (number mod 97), where
Corsica's 2A and 2B count as 19 and 18.
"""

from __future__ import annotations

import re

from vault.errors import InvalidResource
from vault.identity.principal import INS_SYSTEMS

_FORM = re.compile(r"^[0-9]{5}(?:[0-9]{2}|2A|2B)[0-9]{6}[0-9]{2}$")


def is_well_formed(value: str) -> bool:
    return bool(_FORM.fullmatch(value))


def key_is_valid(value: str) -> bool:
    body = value[:13]
    corsica = {"2A": "19", "2B": "18"}.get(body[5:7])
    if corsica:
        body = body[:5] + corsica + body[7:]
    return 97 - int(body) % 97 == int(value[13:])


def check_ins(system: str, value: str, *, check_key: bool, expression: str) -> str:
    if system not in INS_SYSTEMS:
        raise InvalidResource("Not an INS identifier system", expression=expression)
    if not is_well_formed(value):
        raise InvalidResource(
            "INS must be 13 characters (digits, or 2A/2B for Corsica) and a 2-digit key",
            expression=expression,
        )
    if check_key and not key_is_valid(value):
        raise InvalidResource("INS key does not match", expression=expression)
    return value
