"""Staff search, keyset pages and the agenda's pages, on PostgreSQL and on SQLite."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services.intake.app import service as intake_service
from services.intake.http import create_app
from services.intake.web import console as web_console
from shared import paging
from shared.cases import get_case, perform
from shared.clock import FixedClock
from shared.db.migrate import upgrade
from shared.runtime import Runtime
from tests.support import settings_for

pytestmark = pytest.mark.connected

TOKENS = (
    "staff=read-staff-0123456789abcdefgh,department:vias=read-vias-0123456789abcdefghi,"
    "department:aseo=read-aseo-0123456789abcdefghi"
)
STAFF = {"Authorization": "Bearer read-staff-0123456789abcdefgh"}
VIAS = {"Authorization": "Bearer read-vias-0123456789abcdefghi"}
START = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)


def filing(name: str, cedula: str, phone: str, email: str, description: str) -> dict[str, Any]:
    return {
        "channel": "web",
        "kind": "denuncia",
        "category": "Calles y huecos",
        "description": description,
        "citizen": {"full_name": name, "id_number": cedula, "phone": phone, "email": email},
        "notify": {"email": email, "address": "Calle 50, Casa 12, Bella Vista"},
    }


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def client(database: str) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime, FixedClock]]:
    # The read side needs the database only: intake's app runs without connecting the broker
    # (what is filed here stays in the outbox).
    clock = FixedClock(START)
    settings = settings_for("amqp://guest:guest@127.0.0.1:5672/", database, api_tokens=TOKENS)
    runtime = Runtime(settings, [intake_service()], clock=clock)
    try:
        await upgrade(runtime.deps.engine)
        transport = httpx.ASGITransport(app=create_app(runtime.deps))
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
            yield http, runtime, clock
    finally:
        await runtime.deps.engine.dispose()


async def file(http: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await http.post("/api/v1/cases", json=body)
    assert response.status_code == 201, response.text
    code: str = response.json()["tracking_code"]
    return code


async def remit(runtime: Runtime, code: str, department: str) -> None:
    for action, params in (
        ("classify", {"kind": "denuncia", "category": "Calles y huecos"}),
        ("remit", {"department": department}),
    ):
        async with runtime.deps.uow() as uow:
            case = await get_case(uow, tracking_code=code, lock=True)
            await perform(uow, runtime.deps.cases, case, action, params, actor="staff", now=START)


async def found(http: httpx.AsyncClient, q: str, headers: dict[str, str] = STAFF) -> set[str]:
    response = await http.get("/api/v1/cases", params={"q": q}, headers=headers)
    assert response.status_code == 200, response.text
    return {item["tracking_code"] for item in response.json()["items"]}


async def test_staff_find_cases_by_any_of_the_citizens_details_and_words(
    client: tuple[httpx.AsyncClient, Runtime, FixedClock],
) -> None:
    http, runtime, clock = client
    sqlite = runtime.deps.engine.dialect.name == "sqlite"
    ana = await file(
        http,
        filing(
            "Ána Núñez Castillo",
            "8-765-4321",
            "6123-4567",
            "ana.nunez@example.com",
            "Hay un hueco enorme frente al mercado de Bella Vista.",
        ),
    )
    clock.advance(timedelta(minutes=5))
    luis = await file(
        http,
        filing(
            "Luis Pérez",
            "3-111-2222",
            "6999-0000",
            "luis@example.com",
            "El semáforo de la avenida Perú no funciona desde el lunes.",
        ),
    )
    await remit(runtime, luis, "vias")

    assert await found(http, "mercado") == {ana}
    assert await found(http, "MERCADO bella") == {ana}
    assert await found(http, "8-765-4321") == {ana}
    assert await found(http, "61234567") == {ana}  # the phone as typed, stored as +507…
    assert await found(http, "6123-4567") == {ana}
    assert await found(http, "luis@example") == {luis}
    assert await found(http, luis[5:12].lower()) == {luis}  # a fragment of the code
    assert await found(http, "Calle 50") == {ana, luis}  # the notification address
    assert await found(http, "nadie-coincide") == set()
    if not sqlite:  # PostgreSQL ignores accents both ways (unaccent); SQLite compares as typed
        assert await found(http, "ana nunez") == {ana}
        assert await found(http, "PEREZ") == {luis}
        assert await found(http, "Perú") == {luis}

    # Combined with the filters, and limited to what the caller may see.
    both = await http.get(
        "/api/v1/cases", params={"q": "calle", "state": "remitted"}, headers=STAFF
    )
    assert [i["tracking_code"] for i in both.json()["items"]] == [luis]
    assert await found(http, "calle", VIAS) == {luis}
    assert await found(http, "mercado", VIAS) == set()

    short = await http.get("/api/v1/cases", params={"q": "ab"}, headers=STAFF)
    assert short.status_code == 422
    assert short.json()["detail"][0]["field"] == "q"
    assert "ab" not in short.json()["detail"][0]["message"]


async def test_keyset_pages_walk_every_case_once_and_the_agenda_is_paged(
    client: tuple[httpx.AsyncClient, Runtime, FixedClock],
) -> None:
    http, runtime, clock = client
    codes = []
    for i in range(7):
        body = filing("Ana", "8-765-4321", "6123-4567", "a@example.com", f"Caso número {i} x")
        codes.append(await file(http, body))
        if i % 2:
            clock.advance(timedelta(minutes=1))  # some share an instant: the id breaks ties

    seen: list[str] = []
    page = (await http.get("/api/v1/cases", params={"limit": 3}, headers=STAFF)).json()
    assert page["total"] == 7
    seen += [i["tracking_code"] for i in page["items"]]
    while page["next_cursor"]:
        # A case filed meanwhile is newer than the cursor: it neither repeats nor shifts.
        await file(http, filing("Otro", "8-1-1", "6000-0000", "o@example.com", "Otro caso aquí"))
        page = (
            await http.get(
                "/api/v1/cases", params={"limit": 3, "cursor": page["next_cursor"]}, headers=STAFF
            )
        ).json()
        assert page["total"] is None
        seen += [i["tracking_code"] for i in page["items"]]
    assert len(seen) == len(set(seen)) == 7
    by_offset = (await http.get("/api/v1/cases", params={"limit": 200}, headers=STAFF)).json()
    # The same order as the offset pages: newest first, the id breaking ties.
    assert [c for c in (i["tracking_code"] for i in by_offset["items"]) if c in codes] == seen
    assert set(seen) == set(codes)

    bad = await http.get("/api/v1/cases", params={"cursor": "no-es-un-cursor"}, headers=STAFF)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "cursor"
    too_big = await http.get("/api/v1/cases", params={"limit": 201}, headers=STAFF)
    assert too_big.status_code == 422

    for code in codes[:5]:
        async with runtime.deps.uow() as uow:
            case = await get_case(uow, tracking_code=code, lock=True)
            for action, params in (
                ("classify", {"kind": "sugerencia", "category": "Sugerencia"}),
                ("add_to_agenda", {}),
            ):
                await perform(uow, runtime.deps.cases, case, action, params, actor="s", now=START)
    agenda: list[str] = []
    page = (await http.get("/api/v1/agenda", params={"limit": 2}, headers=STAFF)).json()
    assert page["total"] == 5
    agenda += [i["tracking_code"] for i in page["items"]]
    while page["next_cursor"]:
        page = (
            await http.get(
                "/api/v1/agenda", params={"limit": 2, "cursor": page["next_cursor"]}, headers=STAFF
            )
        ).json()
        agenda += [i["tracking_code"] for i in page["items"]]
    assert sorted(agenda) == sorted(codes[:5]) and len(agenda) == 5
    assert (await http.get("/api/v1/agenda", params={"limit": 500}, headers=STAFF)).status_code == (
        422
    )


async def test_the_console_searches_within_what_the_session_may_see(
    client: tuple[httpx.AsyncClient, Runtime, FixedClock],
) -> None:
    http, runtime, _clock = client
    ana = await file(
        http,
        filing(
            "Ana Castillo", "8-765-4321", "6123-4567", "ana@example.com", "Basura junto al mercado."
        ),
    )
    luis = await file(
        http,
        filing(
            "Luis Castillo", "3-111-2222", "6999-0000", "luis@example.com", "Semáforo dañado aquí."
        ),
    )
    await remit(runtime, luis, "vias")
    assert (
        await http.post("/consola/entrar", data={"token": "read-staff-0123456789abcdefgh"})
    ).status_code == 303
    page = await http.get("/consola/buscar", params={"q": "castillo"})
    assert page.status_code == 200
    assert ana in page.text and luis in page.text
    exact = await http.get("/consola/buscar", params={"q": ana.lower()}, follow_redirects=False)
    assert exact.status_code == 303 and exact.headers["location"] == f"/consola/casos/{ana}"
    short = await http.get("/consola/buscar", params={"q": "x"})
    assert short.status_code == 422 and "al menos 3 caracteres" in short.text

    http.cookies.clear()
    assert (
        await http.post("/consola/entrar", data={"token": "read-vias-0123456789abcdefghi"})
    ).status_code == 303
    department = await http.get("/consola/buscar", params={"q": "castillo"})
    assert luis in department.text and ana not in department.text


async def test_totals_are_exact_up_to_the_cap_and_say_when_they_are_not(
    client: tuple[httpx.AsyncClient, Runtime, FixedClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    http, runtime, clock = client
    monkeypatch.setattr(paging, "COUNT_CAP", 4)
    codes = []
    for i in range(7):
        codes.append(
            await file(
                http, filing("Ana", "8-1-2", "6123-4567", "a@e.com", f"Hueco en la calle {i}")
            )
        )
        clock.advance(timedelta(minutes=1))
    await remit(runtime, codes[0], "vias")

    every = (await http.get("/api/v1/cases", params={"limit": 2}, headers=STAFF)).json()
    assert (every["total"], every["total_capped"]) == (4, True)  # more than 4
    narrow = (await http.get("/api/v1/cases", params={"department": "vias"}, headers=STAFF)).json()
    assert (narrow["total"], narrow["total_capped"]) == (1, False)
    exact = (await http.get("/api/v1/cases", params={"state": "received"}, headers=STAFF)).json()
    assert (exact["total"], exact["total_capped"]) == (4, True)

    # A deep offset page is the same slice of the list as walking to it.
    whole = (await http.get("/api/v1/cases", params={"limit": 200}, headers=STAFF)).json()
    order = [i["tracking_code"] for i in whole["items"]]
    assert sorted(order) == sorted(codes)
    for offset in (0, 3, 5, 6, 7):
        page = (
            await http.get("/api/v1/cases", params={"limit": 2, "offset": offset}, headers=STAFF)
        ).json()
        assert [i["tracking_code"] for i in page["items"]] == order[offset : offset + 2]
    received = (
        await http.get(
            "/api/v1/cases", params={"limit": 2, "offset": 4, "state": "received"}, headers=STAFF
        )
    ).json()
    assert [i["tracking_code"] for i in received["items"]] == [c for c in order if c != codes[0]][
        4:6
    ]


async def test_the_inbox_pages_its_list_by_keyset_and_caps_its_counts(
    client: tuple[httpx.AsyncClient, Runtime, FixedClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    http, _runtime, clock = client
    monkeypatch.setattr(paging, "COUNT_CAP", 3)
    monkeypatch.setattr(web_console, "PAGE_SIZE", 2)
    codes = []
    for i in range(5):
        codes.append(
            await file(http, filing("Ana", "8-1-2", "6123-4567", "a@e.com", f"Caso de prueba {i}"))
        )
        clock.advance(timedelta(minutes=1))
    assert (
        await http.post("/consola/entrar", data={"token": "read-staff-0123456789abcdefgh"})
    ).status_code == 303

    def listed(page: str) -> list[str]:
        section = page.split('id="titulo-estados"', 1)[1]
        return re.findall(r'<th scope="row"><a href="/consola/casos/([^"]+)"', section)

    for state in ("open", "received"):
        page = (await http.get("/consola", params={"estado": state})).text
        assert "más de 3" in page  # five received cases, counted up to three
        seen = listed(page)
        while (following := re.search(r'<a href="(/consola\?[^"]+)" rel="next"', page)) is not None:
            page = (await http.get(following.group(1).replace("&amp;", "&"))).text
            assert "Primera página" in page
            seen += listed(page)
        assert sorted(seen) == sorted(codes) and len(seen) == 5
    stale = await http.get("/consola", params={"estado": "received", "despues": "roto"})
    assert stale.status_code == 200 and len(listed(stale.text)) == 2


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_the_list_indexes_exist_on_postgresql(
    client: tuple[httpx.AsyncClient, Runtime, FixedClock],
) -> None:
    _http, runtime, _clock = client
    assert runtime.deps.engine.dialect.name == "postgresql"
    async with runtime.deps.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'cases'")
        )
        indexes = {name: definition for name, definition in rows}
    for name, columns in {
        "ix_cases_received_id": "(received_at DESC, id)",
        "ix_cases_state_received_id": "(state, received_at DESC, id)",
        "ix_cases_department_received_id": "(department, received_at DESC, id)",
        "ix_cases_kind_received_id": "(kind, received_at DESC, id)",
        "ix_cases_channel_received_id": "(channel, received_at DESC, id)",
        "ix_cases_state_updated_id": "(state, updated_at DESC, id)",
        "ix_cases_state_kind_received_id": "(state, kind, received_at, id)",
        "ix_cases_open_due_id": "(due_at, id)",
        "ix_cases_search_trgm": "gin (search_text gin_trgm_ops)",
        "ix_cases_open_description_trgm": "gist (description gist_trgm_ops",
    }.items():
        assert columns in indexes[name], indexes.get(name)
    assert "WHERE" in indexes["ix_cases_open_due_id"]
    assert "duplicate_of IS NULL" in indexes["ix_cases_open_description_trgm"]
