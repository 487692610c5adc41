"""FHIR ``base64Binary``: RFC 4648 base64 with padding; whitespace between quads is
allowed by the R4 regex ``(\\s*([0-9a-zA-Z\\+/=]){4}\\s*)+``."""

from __future__ import annotations

import base64
import binascii
import re

from vault.errors import InvalidResource

_WHITESPACE = re.compile(r"\s+")


def decode(value: object, *, expression: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidResource("base64Binary must be a string", expression=expression)
    compact = _WHITESPACE.sub("", value)
    if len(compact) % 4:
        raise InvalidResource(
            "Invalid base64Binary: length is not a multiple of 4", expression=expression
        )
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidResource("Invalid base64Binary", expression=expression) from None
