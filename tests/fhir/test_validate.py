"""Structural validation refuses what the FHIR models choke on with an InvalidResource,
never another exception (found by tests/hardening/test_parser_fuzz.py)."""

from __future__ import annotations

from typing import Any

import pytest

from vault.errors import InvalidResource
from vault.fhir.validate import validate_resource


@pytest.mark.parametrize("url", [False, True, 0, 1.5, [], {}])
def test_an_attachment_url_that_is_not_a_string_is_an_invalid_resource(url: Any) -> None:
    resource = {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [{"attachment": {"contentType": "application/pdf", "url": url}}],
    }
    with pytest.raises(InvalidResource):
        validate_resource(resource)
