"""Resolving references between the entries of one Bundle, as R4 defines it
(bundle.html#references): a reference equal to an entry's ``fullUrl`` (``urn:uuid:``,
``urn:oid:`` or an absolute URL) names that entry; a relative ``Type/id`` reference inside
an entry whose ``fullUrl`` is an absolute RESTful URL is resolved against that URL's base
first. Anything else is a reference to a resource outside the Bundle."""

from __future__ import annotations

import re
from collections.abc import Mapping

_RESTFUL = re.compile(
    r"^(?P<base>https?://.+/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)


def split_restful(reference: str) -> tuple[str | None, str, str] | None:
    """``(base, type, id)`` of a RESTful reference, ``base`` None when it is relative."""
    match = _RESTFUL.match(reference)
    if match is None:
        return None
    return match["base"], match["type"], match["id"]


def local(reference: str, fhir_base: str) -> tuple[str, str] | None:
    """``(type, id)`` of a reference to a resource on this server -- relative, or absolute
    under ``fhir_base`` (``https://vault.example/fhir/``) -- or None."""
    parts = split_restful(reference.removeprefix(fhir_base))
    if parts is None or parts[0] is not None:
        return None
    return parts[1], parts[2]


class BundleIndex:
    def __init__(self, full_urls: Mapping[str, int]) -> None:
        self._by_url = dict(full_urls)

    def resolve(self, reference: str, *, from_full_url: str | None) -> int | None:
        """The index of the entry ``reference`` names, or None when it names none."""
        if reference in self._by_url:
            return self._by_url[reference]
        parts = split_restful(reference)
        if parts is None:
            return None
        base, kind, resource_id = parts
        if base is not None:
            # A version-specific absolute reference names the entry of that resource.
            return self._by_url.get(f"{base}{kind}/{resource_id}")
        container = split_restful(from_full_url or "")
        if container is None or container[0] is None:
            return None
        return self._by_url.get(f"{container[0]}{kind}/{resource_id}")
