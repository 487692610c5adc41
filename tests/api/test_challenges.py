from __future__ import annotations


def test_a_request_without_credentials_gets_a_bare_bearer_challenge(client):
    response = client.get("/fhir/DocumentReference")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="vault"'
    assert response.json()["resourceType"] == "OperationOutcome"


def test_a_bad_token_gets_an_invalid_token_challenge(client):
    response = client.get("/fhir/DocumentReference", headers={"Authorization": "Bearer not.a.jwt"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
