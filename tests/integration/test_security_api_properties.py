"""A property-based run over intake's ``/openapi.json`` (schemathesis, in-process over ASGI,
SQLite, a staff token): whatever the generated input, no 5xx, and every answer is one the
schema documents — status code, content type and body."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.schemas import OpenApiSchema

from services.intake.app import service
from services.intake.http import create_app
from services.intake.settings import IntakeSettings
from shared.clock import FixedClock
from shared.db.migrate import upgrade
from shared.runtime import Runtime
from shared.settings import Settings
from tests.integration.security_app import STAFF_TOKEN, START, TOKENS, intake_app

EXAMPLES_PER_OPERATION = 10
STAFF = {"Authorization": f"Bearer {STAFF_TOKEN}"}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


async def _migrated(runtime: Runtime) -> None:
    await upgrade(runtime.deps.engine)
    # The requests run on schemathesis's own event loop: no connection may outlive this one.
    await runtime.deps.engine.dispose()


@pytest.fixture(scope="module")
def intake_schema(tmp_path_factory: pytest.TempPathFactory) -> OpenApiSchema:
    database = Path(tmp_path_factory.mktemp("properties")) / "defensa311.db"
    settings_ = Settings(database_url=f"sqlite+aiosqlite:///{database}", api_tokens=TOKENS)
    runtime = Runtime(settings_, [service()], clock=FixedClock(START))
    asyncio.run(_migrated(runtime))
    app = create_app(runtime.deps, IntakeSettings())
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def check_operation(operation: APIOperation, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=STAFF, checks=CHECKS)

    run()


# Generous for a run of well under a minute; a hang fails alone.
@pytest.mark.timeout(180)
# schemathesis's pytest plugin (schema.parametrize / from_fixture) reads a pytest-internal
# attribute that pytest 9 no longer has: each operation is driven through hypothesis here.
def test_no_input_gets_a_server_error_or_an_undocumented_answer(
    intake_schema: OpenApiSchema,
) -> None:
    failures: list[str] = []
    operations = [result.ok() for result in intake_schema.get_all_operations()]
    # /readyz answers 503 by design here: the run has no broker.
    operations = [op for op in operations if op.path not in ("/readyz", "/healthz")]
    assert len(operations) > 10
    for operation in operations:
        # Open311 declares only free-text path segments: there is nothing to make invalid.
        negative = operation.path.startswith("/api/")
        for mode in (GenerationMode.POSITIVE, *([GenerationMode.NEGATIVE] if negative else [])):
            try:
                check_operation(operation, mode)
            except Unsatisfiable:
                pass  # nothing in this operation can be made invalid
            except (Exception, BaseExceptionGroup) as exc:  # one report naming every failure
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join(failures)


async def test_the_document_names_every_error_with_its_real_body(tmp_path: Path) -> None:
    async with intake_app(tmp_path) as app:
        document = (await app.client.get("/openapi.json")).json()
    field_error = document["components"]["schemas"]["FieldError"]
    assert field_error["required"] == ["field", "rule", "message"]
    assert "loc" not in str(document["components"]["schemas"]["HTTPValidationError"])
    listing = document["paths"]["/api/v1/cases"]["get"]["responses"]
    assert {"401", "403", "404", "405", "409", "413", "422", "429"} <= set(listing)
    filing = document["paths"]["/open311/v2/requests.{fmt}"]["post"]["responses"]
    assert {"201", "400", "403", "404", "429"} <= set(filing)
    assert "text/xml" in filing["400"]["content"]
