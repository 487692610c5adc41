"""Which of the space's routes carry a document: the body limit lets them take as much as
the FHIR routes do (``VAULT_MAX_BODY_BYTES``), not the small forms' limit."""

from __future__ import annotations

import re

# POST /dossiers/{pid}/ajouter (vault/web/routes.py): the patient's own upload.
_UPLOAD_FORM = re.compile(r"/dossiers/[^/]+/ajouter")


def carries_documents(path: str) -> bool:
    return _UPLOAD_FORM.fullmatch(path) is not None
