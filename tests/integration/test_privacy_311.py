"""The 311 platform's queue never receives a citizen's personal data (DESIGN §4).

One case of each channel (presencial, web, 311) goes through its whole life, remitted to a
department on the way (the path whose department copy carries the contact); then every
message that reached ``defensa311.platform311`` is scanned for the citizen's name, identity
number, e-mail, phone and addresses.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest

from services.intake.app import service as intake_service
from services.router.app import service as router_service
from shared.cases import file_case, get_case, perform
from shared.clock import FixedClock
from shared.contract import validate_submission
from shared.db.models import CaseRow
from shared.messaging import PLATFORM311, department_queue
from shared.runtime import Runtime
from tests.integration.test_router_paths import CORRUPTION, NOW, Platform311, settled
from tests.support import eventually, running, settings_for

pytestmark = pytest.mark.connected

PERSONAL = {
    "name": "Josefina Ñáñez Quirós",
    "id_number": "4-712-1936",
    "email": "josefina.nanez@example.com",
    "phone": "6987-1234",
    "notify_address": "Vía Argentina, edificio Las Acacias, apartamento 7B",
    "location_address": "Calle 73 Este, casa 21, San Francisco",
}


def personal_submission(channel: str) -> dict[str, Any]:
    return {
        "kind": "denuncia",
        "description": f"{CORRUPTION} Caso por {channel}.",
        "citizen": {
            "full_name": PERSONAL["name"],
            "id_number": PERSONAL["id_number"],
            "phone": PERSONAL["phone"],
            "email": PERSONAL["email"],
        },
        "notify": {"email": PERSONAL["email"], "address": PERSONAL["notify_address"]},
        "location": {
            "district": "Panamá",
            "corregimiento": "San Francisco",
            "address": PERSONAL["location_address"],
            "lat": 8.99123,
            "lon": -79.51234,
        },
    }


def folded(text: str) -> str:
    """Lower case without accents, so an escaped or normalised copy is found too."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return ascii_text.lower()


def needles() -> list[str]:
    found = [folded(v) for v in PERSONAL.values()]
    found += [folded(part) for part in PERSONAL["name"].split() if len(part) > 3]
    found += ["47121936", "69871234", "6987 1234", "vía argentina", "calle 73"]
    return found


@pytest.fixture
async def runtime(amqp_url: str, pg_url: str) -> AsyncIterator[Runtime]:
    settings = settings_for(amqp_url, pg_url)
    async with running(settings, [intake_service(), router_service()], FixedClock(NOW)) as rt:
        yield rt


@pytest.fixture
async def platform(amqp_url: str) -> AsyncIterator[Platform311]:
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        yield Platform311(connection)
    finally:
        await connection.close()


async def act(
    rt: Runtime,
    case_id: str,
    action: str,
    params: dict[str, Any],
    actor: str,
    department: str | None = None,
) -> None:
    async with rt.deps.uow() as uow:
        case = await get_case(uow, case_id=case_id, lock=True)
        await perform(
            uow, rt.deps.cases, case, action, params, actor=actor, now=NOW, department=department
        )


async def filed_by_staff_or_web(rt: Runtime, channel: str) -> CaseRow:
    submission = validate_submission(personal_submission(channel))
    async with rt.deps.uow() as uow:
        case, _ = await file_case(
            uow,
            rt.deps.cases,
            submission,
            channel=channel,
            actor="staff:ana" if channel == "presencial" else "ciudadano",
            now=NOW,
        )
    return case


async def test_no_personal_data_reaches_the_311_queue_over_a_case_life_of_each_channel(
    runtime: Runtime, platform: Platform311, amqp_url: str
) -> None:
    presencial = await filed_by_staff_or_web(runtime, "presencial")
    web = await filed_by_staff_or_web(runtime, "web")
    body = personal_submission("311") | {
        "event_id": str(uuid.uuid4()),
        "event_type": "CaseSubmitted",
        "occurred_at": NOW.isoformat(),
        "schema_version": 1,
        "external_ref": "311-PRIV",
    }
    await platform.submit(body)
    from_311 = await settled(runtime, "311-PRIV", "remitted")

    case_ids = [presencial.id, web.id, from_311.id]
    for case_id in case_ids:
        # The router remits each (corruption → rrhh); the department answers; staff close.
        async def remitted(case_id: str = case_id) -> bool:
            async with runtime.deps.uow() as uow:
                return (await get_case(uow, case_id=case_id)).state == "remitted"

        await eventually(remitted)
        await act(
            runtime,
            case_id,
            "respond",
            {"response": "Se abrió un proceso disciplinario."},
            "department:rrhh",
            department="rrhh",
        )
        await act(runtime, case_id, "close", {}, "staff:ana")

    async def every_case_closed() -> bool:
        await platform.drain()
        closed = {b.get("case_id") for _, b in platform.seen if b["event_type"] == "CaseClosed"}
        return closed >= set(case_ids)

    await eventually(every_case_closed, timeout=15)

    seen_types = {(b.get("case_id"), b["event_type"]) for _, b in platform.seen}
    for case_id in case_ids:
        assert {(case_id, t) for t in ("CaseReceived", "CaseRemitted", "CaseResolved")} <= (
            seen_types
        )
    for key, message in platform.seen:
        text = folded(json.dumps(message, ensure_ascii=False))
        for needle in needles():
            assert needle not in text, f"{message['event_type']} on {key} carries personal data"

    # The department did receive its copy, with the contact, on its own key.
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(department_queue("rrhh").name, ensure=True)
        copies = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            copies.append((message.routing_key, json.loads(message.body)))
        remitted_copies = [b for _, b in copies if b["event_type"] == "CaseRemittedToDepartment"]
        assert {b["case_id"] for b in remitted_copies} == set(case_ids)
        assert {k for k, b in copies if b["event_type"] == "CaseRemittedToDepartment"} == {
            "department.rrhh.remitted"
        }
        assert all(b["citizen"]["id_number"] == PERSONAL["id_number"] for b in remitted_copies)
    finally:
        await connection.close()
    assert "case.#" not in PLATFORM311.bindings
