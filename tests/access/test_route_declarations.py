"""What a route declares it requires (vault/http/deps.py ``requires``) is true: every
permission its service asks the decision for, granted or refused, is one the route declares.
The requests are those of the decision point's walk (test_policy_decision_point.py), made by
the record's patient and by a professional the patient blocked."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from tests.access.test_policy_decision_point import JSON, RECORD_ROUTES
from tests.access.test_policy_decision_point import record as record  # noqa: PLC0414 - a fixture
from tests.factories import DOCTOR
from vault.access.service import AccessService
from vault.http.deps import declared


def _declarations(app) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute):
            requirement = declared(route.original_route.dependencies)
            for method in route.methods or ():
                found[(method, route.path)] = (
                    {permission.value for permission in requirement.permissions}
                    if requirement
                    else set()
                )
    return found


@pytest.mark.parametrize("who", ["the patient", "a blocked professional"])
def test_every_record_route_asks_the_decision_only_for_what_it_declares(
    app, client, tokens, record, monkeypatch, who
):
    asked: list[str] = []
    for name in ("_decide", "refuse_unknown", "require_visible"):
        original = getattr(AccessService, name)

        def spy(self, session, actor, permission, *args, _original=original, **kwargs):
            asked.append(permission.value)
            return _original(self, session, actor, permission, *args, **kwargs)

        monkeypatch.setattr(AccessService, name, spy)
    headers = (
        tokens.patient(record.patient_ins) if who == "the patient" else tokens.professional(DOCTOR)
    )
    declarations = _declarations(app)
    undeclared = {}
    for (method, path), call in RECORD_ROUTES.items():
        url, body, media = call(record)
        asked.clear()
        client.request(method, url, json=body, headers={**headers, "Content-Type": media or JSON})
        extra = set(asked) - declarations[(method, path)]
        if extra:
            undeclared[(method, path)] = extra
    assert undeclared == {}
