"""Liveness and readiness: public, and saying nothing but "ok", "ready" or "unavailable"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vault.api.app import PUBLIC_PATHS, create_app
from vault.observability import metrics
from vault.services import build_services
from vault.settings import Settings


def test_liveness_answers_without_a_token(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_answers_ready_when_database_blobs_and_keys_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}
    assert response.headers["cache-control"] == "no-store"


def test_probes_and_metrics_are_the_public_operations_paths():
    assert {"/healthz", "/readyz", "/metrics"} <= PUBLIC_PATHS


def _failures(component: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value(
            "vault_readiness_failures_total", {"component": component}
        )
        or 0.0
    )


def _unready(settings: Settings, take_away: Path | None) -> tuple[int, dict, bytes]:
    services = build_services(settings)
    try:
        # Taken away from under a running vault, as an outage would.
        if take_away is not None and take_away.is_dir():
            shutil.rmtree(take_away)
        elif take_away is not None:
            take_away.unlink()
        with TestClient(create_app(settings, services)) as client:
            response = client.get("/readyz")
            return response.status_code, response.json(), response.content
    finally:
        services.close()


@pytest.mark.parametrize("component", ["database", "blob_store", "key_provider"])
def test_readiness_fails_with_a_body_that_names_no_component(
    tmp_path: Path, database_url: str, component: str
):
    blobs = tmp_path / "blobs"
    settings = Settings(
        database_url=(
            "postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
            if component == "database"
            else database_url
        ),
        data_dir=tmp_path / "data",
        base_url="http://testserver",
        blob_store=f"file://{blobs}",
    )
    take_away = {
        "database": None,
        "blob_store": blobs,
        "key_provider": tmp_path / "data" / "keyring.json",
    }[component]
    before = _failures(component)

    status, body, raw = _unready(settings, take_away)

    assert status == 503
    assert body == {"status": "unavailable"}
    for word in (b"database", b"blob", b"key", b"postgres", str(tmp_path).encode()):
        assert word not in raw
    assert _failures(component) == before + 1
