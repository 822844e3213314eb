"""Every role × every action, through the API and through the console: the same allow/deny.

Each action is tried on a case in a state that allows it, so only the caller's role decides.
Both doors ask the one registry (shared/domain/actions.py); this test holds them to it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from services.intake import app as intake_app
from services.intake.http import create_app
from shared.cases import file_case, get_case, perform
from shared.clock import FixedClock
from shared.domain.actions import ACTIONS, may_take
from shared.runtime import Deps
from tests.factories import NOW, VALID_BODIES, submission
from tests.support import running, settings_for

pytestmark = pytest.mark.connected

TOKENS = {
    "staff": "tok-staff-0123456789",
    "supervisor": "tok-super-0123456789",
    "superior": "tok-superior-01234567",
    "department:vias": "tok-vias-0123456789",
    "platform311": "tok-p311-0123456789",
}
ROLES: list[str | None] = [*TOKENS, None]  # None: anonymous

RESOLVED = [
    ("classify", {"kind": "queja"}),
    ("start_inspection", {}),
    ("record_findings", {"findings": "Se verificó y se corrigió."}),
]
# The steps (from a freshly filed case) to a state where the action is allowed.
SETUP: dict[str, list[tuple[str, dict[str, str]]]] = {
    "classify": [],
    "decline": [],
    "forward": [],
    "start_inspection": [("classify", {"kind": "queja"})],
    "remit": [("classify", {"kind": "denuncia"})],
    "add_to_agenda": [("classify", {"kind": "sugerencia"})],
    "record_findings": [("classify", {"kind": "queja"}), ("start_inspection", {})],
    "respond": [("classify", {"kind": "denuncia"}), ("remit", {"department": "vias"})],
    "return": [("classify", {"kind": "denuncia"}), ("remit", {"department": "vias"})],
    "record_meeting_outcome": [("classify", {"kind": "sugerencia"}), ("add_to_agenda", {})],
    "close": [
        ("classify", {"kind": "queja"}),
        ("start_inspection", {}),
        ("record_findings", {"findings": "Se verificó y se corrigió."}),
    ],
    "join": [],
    "separate": [("join", {})],
    "add_information": [],
    "reopen": [
        ("classify", {"kind": "queja"}),
        ("start_inspection", {}),
        ("record_findings", {"findings": "Se verificó y se corrigió."}),
    ],
    "answer_survey": [
        ("classify", {"kind": "queja"}),
        ("start_inspection", {}),
        ("record_findings", {"findings": "Se verificó y se corrigió."}),
        ("close", {}),
    ],
    # Recursos: filed within the term after the resolution, then decided.
    "file_reconsideration": RESOLVED,
    "file_appeal": RESOLVED,
    "decide_reconsideration": [*RESOLVED, ("file_reconsideration", {"grounds": "No se reparó."})],
    "decide_appeal": [*RESOLVED, ("file_appeal", {"grounds": "No se reparó."})],
}
#: The actions whose body names another case (a join's main case): a fresh one per try.
NAMES_A_MAIN_CASE = {"join"}


@dataclass
class Doors:
    deps: Deps
    app: object

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async def case_ready_for(self, action: str) -> tuple[str, dict[str, object]]:
        """A case where ``action`` is allowed, and the action's body for it."""
        async with self.deps.uow() as uow:
            main, _ = await file_case(
                uow, self.deps.cases, submission(), channel="web", actor="ciudadano", now=NOW
            )
            case, _ = await file_case(
                uow, self.deps.cases, submission(), channel="web", actor="ciudadano", now=NOW
            )
            names_main = {"main": main.tracking_code}
            for step, data in SETUP[action]:
                data = {**data, **names_main} if step in NAMES_A_MAIN_CASE else data
                await perform(uow, self.deps.cases, case, step, data, actor="staff", now=NOW)
            body = dict(VALID_BODIES[action])
            if action in NAMES_A_MAIN_CASE:
                body.update(names_main)
            return case.tracking_code, body

    async def state_of(self, code: str) -> str:
        async with self.deps.uow() as uow:
            return (await get_case(uow, tracking_code=code)).state


@pytest.fixture
async def doors(amqp_url: str, pg_url: str) -> AsyncIterator[Doors]:
    tokens = ",".join(f"{role}={token}" for role, token in TOKENS.items())
    settings = settings_for(amqp_url, pg_url, api_tokens=tokens)
    async with running(settings, [intake_app.service()], FixedClock(NOW)) as runtime:
        yield Doors(runtime.deps, create_app(runtime.deps))


async def through_the_api(doors: Doors, role: str | None, action: str) -> bool:
    code, body = await doors.case_ready_for(action)
    before = await doors.state_of(code)
    headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
    async with doors.client() as client:
        response = await client.post(
            f"/api/v1/cases/{code}/actions/{action}", json=body, headers=headers
        )
    allowed = response.status_code == 200
    if not allowed:
        assert response.status_code in (401, 403, 404), response.text
        assert await doors.state_of(code) == before  # a refusal changes nothing
    return allowed


async def through_the_console(doors: Doors, role: str | None, action: str) -> bool:
    code, body = await doors.case_ready_for(action)
    before = await doors.state_of(code)
    async with doors.client() as client:
        csrf = ""
        if role is not None:
            await client.post("/consola/entrar", data={"token": TOKENS[role]})
            page = await client.get("/consola")
            found = re.search(r'name="csrf" value="([^"]+)"', page.text)
            csrf = found.group(1) if found else ""
        response = await client.post(f"/consola/casos/{code}/{action}", data={"csrf": csrf, **body})
    location = response.headers.get("location", "")
    allowed = response.status_code == 303 and "hecho=" in location
    if not allowed:
        assert response.status_code in (303, 403, 404), response.text
        assert await doors.state_of(code) == before  # a refusal changes nothing
    return allowed


async def test_every_role_may_take_the_same_actions_through_the_api_and_the_console(
    doors: Doors,
) -> None:
    table: dict[tuple[str | None, str], tuple[bool, bool]] = {}
    for role in ROLES:
        for action in ACTIONS:
            api = await through_the_api(doors, role, action)
            console = await through_the_console(doors, role, action)
            table[(role, action)] = (api, console)
    disagree = {key: doors_ for key, doors_ in table.items() if doors_[0] != doors_[1]}
    assert disagree == {}
    wrong = {
        key: allowed for key, (allowed, _) in table.items() if allowed != may_take(key[0], key[1])
    }
    assert wrong == {}
    # The hole this closes: staff answering for a department through the console.
    assert table[("staff", "respond")] == (False, False)
    assert table[("department:vias", "respond")] == (True, True)
    # The apelación is the superior's (or the supervisor's), never a department's or staff's.
    assert table[("superior", "decide_appeal")] == (True, True)
    assert table[("supervisor", "decide_appeal")] == (True, True)
    assert table[("staff", "decide_appeal")] == (False, False)
    assert table[("department:vias", "decide_appeal")] == (False, False)
    assert table[("superior", "decide_reconsideration")] == (False, False)
