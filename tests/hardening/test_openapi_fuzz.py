"""Schemathesis against /openapi.json, as each kind of caller: whatever it generates from
the schema -- valid requests and deliberately invalid ones -- gets no 5xx and an answer the
schema describes (status, content type, body, headers).

Not checked: schemathesis' negative_data_rejection, which wants unknown query parameters
refused everywhere. The FHIR searches do refuse them; the JSON endpoints (/audit, /api)
ignore them, as most HTTP APIs do, and that is a design choice rather than a fault."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import Tokens, create_patient, ins, provide_bundle, publish

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Bounded so that six callers over every operation stay within CI's minutes;
# VAULT_FUZZ_SCALE=10 digs deeper by hand.
SCALE = int(os.environ.get("VAULT_FUZZ_SCALE", "1"))
EXAMPLES = {GenerationMode.POSITIVE: 4 * SCALE, GenerationMode.NEGATIVE: 3 * SCALE}
KNOWN_ID_EXAMPLES = 3 * SCALE

ROLES: dict[str, Callable[[Tokens], dict[str, str]]] = {
    "patient": lambda tokens: tokens.patient(ins(1)),
    "other-patient": lambda tokens: tokens.patient(ins(2)),
    "professional": lambda tokens: tokens.professional(),
    "software": lambda tokens: tokens.software(),
    "caregiver": lambda tokens: tokens.caregiver(),
    "operator": lambda tokens: tokens.operator(),
}


def seed(client: Any, tokens: Tokens) -> dict[str, str]:
    """A record with a document (ITI-105) and a submission (ITI-65), so that generated
    requests can also reach real resources rather than only 404s."""
    patient_id, _ = create_patient(client, tokens, seed=1)
    create_patient(client, tokens, seed=2)
    stored = publish(client, tokens.professional(), patient_id)
    bundle = provide_bundle(
        {"reference": f"Patient/{patient_id}"}, [(b"%PDF-1.7 b", "application/pdf")]
    )
    provided = client.post("/fhir", json=bundle, headers=tokens.professional())
    assert provided.status_code == 200, provided.text
    list_id = provided.json()["entry"][0]["response"]["location"].split("/")[1]
    return {
        "patient_id": patient_id,
        "document_id": stored["id"],
        "binary_id": stored["content"][0]["attachment"]["url"].rsplit("/", 1)[1],
        "list_id": list_id,
    }


def _fuzz(
    operation: Any, strategy: Any, headers: dict[str, str], examples: int, negative: bool
) -> None:
    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid: the operation takes no parameter and no body.
        assert negative


@pytest.mark.slow
@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_operation_answers_as_documented_and_never_5xx(app, client, tokens, role) -> None:
    known = seed(client, tokens)
    auth = {"Authorization": ROLES[role](tokens)["Authorization"]}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletions last, so that reads and updates still find the seeded resources.
    operations.sort(key=lambda operation: operation.method.lower() == "delete")
    assert len(operations) > 40
    failures: dict[str, str] = {}
    for operation in operations:
        names = {parameter.name for parameter in operation.path_parameters}
        strategies = [
            (operation.as_strategy(generation_mode=mode), count, mode is GenerationMode.NEGATIVE)
            for mode, count in EXAMPLES.items()
        ]
        if names & known.keys():
            fixed = {name: known[name] for name in names & known.keys()}
            strategies.append(
                (operation.as_strategy(path_parameters=fixed), KNOWN_ID_EXAMPLES, False)
            )
        for strategy, count, negative in strategies:
            try:
                _fuzz(operation, strategy, auth, count, negative)
            except BaseException as failure:
                if isinstance(failure, KeyboardInterrupt):
                    raise
                failures[f"{operation.label} ({'negative' if negative else 'positive'})"] = str(
                    failure
                )[:2000]
                break
    assert not failures, "\n\n".join(f"== {label}\n{text}" for label, text in failures.items())
