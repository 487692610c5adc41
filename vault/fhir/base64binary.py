"""FHIR ``base64Binary`` exactly as R4 defines it: RFC 4648 base64 (standard alphabet,
padding required) matching the regex ``(\\s*([0-9a-zA-Z\\+/=]){4}\\s*)+``.

The regex allows whitespace between groups of four characters -- which is what MIME line
wrapping at 76 characters produces -- but not inside a group, and it requires at least
one group: FHIR forbids empty strings. ``\\s`` is XML Schema's: space, tab, CR and LF.
"""

from __future__ import annotations

import base64
import binascii
import re

from vault.errors import InvalidResource

_WHITESPACE = re.compile(r"[ \t\r\n]+")
# RFC 4648 section 4, with padding only at the very end.
_ALPHABET = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def decode(value: object, *, expression: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidResource("base64Binary must be a string", expression=expression)
    if value and len(value) % 4 == 0 and not value.endswith("==="):
        try:
            # The common case, valid and unwrapped, decoded in one pass in C. Strict mode
            # with these two guards (it would take padding past a full group) accepts only
            # what the checks below accept.
            return binascii.a2b_base64(value, strict_mode=True)
        except (binascii.Error, ValueError):
            pass
    compact = _compact(value, expression)
    if not compact:
        raise InvalidResource("base64Binary must not be empty", expression=expression)
    if len(compact) % 4:
        raise InvalidResource(
            "Invalid base64Binary: padding is required (length is not a multiple of 4)",
            expression=expression,
        )
    if not _ALPHABET.fullmatch(compact):
        raise InvalidResource(
            "Invalid base64Binary: only A-Z, a-z, 0-9, + and / with = padding at the end",
            expression=expression,
        )
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidResource("Invalid base64Binary", expression=expression) from None


def _compact(value: str, expression: str) -> str:
    if _WHITESPACE.search(value) is None:
        # The common case, and the cheap one for documents of tens of megabytes.
        return value
    runs = _WHITESPACE.split(value)
    if any(len(run) % 4 for run in runs):
        raise InvalidResource(
            "Invalid base64Binary: whitespace is allowed only between groups of 4 characters",
            expression=expression,
        )
    return "".join(runs)


def encode(content: bytes) -> str:
    return base64.b64encode(content).decode("ascii")
