"""Schemathesis against the running service's /openapi.json: no 5xx, answers as documented.

Seeded (``derandomize``) and bounded. ``positive_data_acceptance`` is left out on
purpose: a body valid by the schema may still name a manifest the server does not
have or a stage its plan lacks, and the judge rightly answers 422.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import TOKEN, RunningService, settings_for

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture
def fuzzed(db: Path) -> Iterator[RunningService]:
    with RunningService(settings_for(db, refresh_interval=3600)) as running:
        yield running


def test_the_service_keeps_its_openapi_contract(fuzzed: RunningService) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    cases = st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE)
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}

    @settings(
        max_examples=200,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def check(case: Any) -> None:
        case.call_and_validate(base_url=fuzzed.url, headers=auth, checks=CHECKS)

    check()
