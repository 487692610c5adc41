"""The patients' web page: a static page that talks to the FHIR API with the patient's token."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from starlette.responses import HTMLResponse

router = APIRouter(tags=["Web"], include_in_schema=False)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'; img-src 'self' blob:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@router.get("/")
def index() -> HTMLResponse:
    page = resources.files("vault.web").joinpath("index.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers=SECURITY_HEADERS)
