"""The interactive API docs work without internet: /docs loads Swagger UI from the vault's
own copy (vendored with its licence), and no page the vault serves references another
host."""

from __future__ import annotations

import re
from importlib import resources
from urllib.parse import urljoin, urlsplit

from vault.api.app import PUBLIC_PATHS
from vault.web.routes import PUBLIC_PATHS as SPACE_PUBLIC_PATHS

REFERENCE = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def _references(html: str) -> list[str]:
    return REFERENCE.findall(html)


def _pages(client) -> dict[str, str]:
    """Every page the vault serves without a parameter in its path: the public routes that
    answer HTML."""
    pages = {}
    for path in sorted(PUBLIC_PATHS | SPACE_PUBLIC_PATHS):
        response = client.get(path)
        if response.headers.get("content-type", "").startswith("text/html"):
            pages[path] = response.text
    return pages


def test_the_docs_load_every_asset_from_the_vault_itself(client):
    response = client.get("/docs")

    assert response.status_code == 200
    references = _references(response.text)
    assert {urlsplit(reference).path for reference in references} >= {
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
    }
    for reference in references:
        asset = client.get(urljoin("http://testserver/docs", reference))
        assert asset.status_code == 200, reference
        assert asset.content, reference
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"]
    assert b"SwaggerUIBundle" in script.content


def test_no_page_the_vault_serves_references_another_host(client):
    pages = _pages(client)

    assert {"/", "/docs"} <= set(pages)
    for path, html in pages.items():
        for reference in _references(html):
            host = urlsplit(urljoin("http://testserver/", reference)).hostname
            assert host == "testserver", f"{path} references {reference}"
        assert "cdn." not in html, path


def test_the_online_validator_is_off(client):
    assert '"validatorUrl": null' in client.get("/docs").text


def test_the_vendored_swagger_ui_ships_its_licence():
    folder = resources.files("vault.api").joinpath("swagger_ui")
    assert "Apache License" in folder.joinpath("LICENSE").read_text(encoding="utf-8")
    assert "swagger-ui-dist" in folder.joinpath("README.md").read_text(encoding="utf-8")
