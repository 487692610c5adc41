from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from vault.fhir.wire import FHIR_JSON


class FhirResponse(Response):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
