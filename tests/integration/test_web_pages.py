"""The web pages over HTTP (httpx against the real app, PostgreSQL and RabbitMQ)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import httpx
import pytest
from sqlalchemy import select

from services.intake import app as intake_app
from services.intake.http import create_app
from services.intake.web.transparency import CaseFacts, figures, to_csv
from shared.cases import get_case
from shared.clock import FixedClock
from shared.db.models import CaseRow, InboxRow, OutboxRow
from shared.domain.actions import new_lifecycle, offered_to
from shared.runtime import Deps
from tests.support import running, settings_for

pytestmark = pytest.mark.connected

STAFF_TOKEN = "tok-staff-0123456789"
OBRAS_TOKEN = "tok-obras-0123456789"
VIAS_TOKEN = "tok-vias-0123456789"
TOKENS = f"staff={STAFF_TOKEN},department:obras={OBRAS_TOKEN},department:vias={VIAS_TOKEN}"
# Monday 3 March 2025, 10:00 in Panama.
START = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
CITIZEN = {
    "citizen.full_name": "Ana María Pérez",
    "citizen.id_number": "8-123-4567",
    "citizen.phone": "6123-4567",
    "notify.email": "ana.perez@example.com",
}
DESCRIPTION = "Hay un problema raro en la esquina del parque central que nadie atiende"


@dataclass
class Web:
    client: httpx.AsyncClient
    deps: Deps
    clock: FixedClock


@pytest.fixture
async def web(amqp_url: str, pg_url: str) -> AsyncIterator[Web]:
    clock = FixedClock(START)
    settings = settings_for(amqp_url, pg_url, api_tokens=TOKENS)
    async with running(settings, [intake_app.service()], clock) as runtime:
        app = create_app(runtime.deps)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Web(client, runtime.deps, clock)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, token: str) -> str:
    response = await client.post("/consola/entrar", data={"token": token})
    assert response.status_code == 303, response.text
    page = await client.get("/consola")
    return csrf_of(page.text)


async def file_presencial(client: httpx.AsyncClient, csrf: str, **extra: str) -> str:
    data = {"csrf": csrf, "kind": "denuncia", "description": DESCRIPTION, **CITIZEN, **extra}
    response = await client.post("/consola/nuevo", data=data)
    assert response.status_code == 303, response.text
    match = re.match(r"/consola/casos/([0-9A-Z-]+)\?hecho=file", response.headers["location"])
    assert match
    return match.group(1)


async def act(
    client: httpx.AsyncClient, csrf: str, code: str, action: str, **data: str
) -> httpx.Response:
    return await client.post(f"/consola/casos/{code}/{action}", data={"csrf": csrf, **data})


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.labels: set[str] = set()
        self.inputs: list[str] = []
        self.html_lang: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "html":
            self.html_lang = values.get("lang")
        for name in ("src", "href"):
            if values.get(name) and tag in ("link", "script", "img"):
                self.urls.append(values[name] or "")
        if tag == "label" and values.get("for"):
            self.labels.add(values["for"] or "")
        if tag in ("input", "select", "textarea") and values.get("type") not in (
            "hidden",
            "submit",
        ):
            self.inputs.append(values.get("id") or "")


def check_page(html: str) -> _Assets:
    parser = _Assets()
    parser.feed(html)
    assert parser.html_lang == "es"
    assert 'href="#contenido"' in html and 'id="contenido"' in html  # skip link
    for url in parser.urls:
        assert url.startswith("/"), f"external asset {url}"
    for ident in parser.inputs:
        assert ident and ident in parser.labels, f"control without a label: {ident!r}"
    return parser


async def test_public_pages_are_spanish_accessible_and_self_contained(web: Web) -> None:
    for path in ("/seguimiento", "/transparencia", "/consola"):
        response = await web.client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        parser = check_page(response.text)
        for url in parser.urls:
            asset = await web.client.get(url)
            assert asset.status_code == 200, url
    assert "Seguimiento de su caso" in (await web.client.get("/seguimiento")).text


async def test_sign_in_sets_a_strict_http_only_cookie_that_cannot_be_forged(web: Web) -> None:
    wrong = await web.client.post("/consola/entrar", data={"token": "nope"})
    assert wrong.status_code == 401
    assert "Token no válido" in wrong.text
    assert "d311_sesion" not in wrong.headers.get("set-cookie", "")

    ok = await web.client.post("/consola/entrar", data={"token": STAFF_TOKEN})
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert STAFF_TOKEN not in cookie
    inbox = await web.client.get("/consola")
    assert "Bandeja de casos" in inbox.text

    value = web.client.cookies["d311_sesion"]
    body, _, signature = value.partition(".")
    forged = body + "." + ("0" if signature[0] != "0" else "1") + signature[1:]
    web.client.cookies.set("d311_sesion", forged)
    assert "Token de acceso" in (await web.client.get("/consola")).text  # back to sign-in


async def test_posts_without_the_csrf_token_change_nothing(web: Web) -> None:
    csrf = await sign_in(web.client, STAFF_TOKEN)
    code = await file_presencial(web.client, csrf)
    refused = await act(
        web.client,
        "forged",
        code,
        "decline",
        estado="received",
        reason_code="duplicada",
        reason="duplicado",
    )
    assert refused.status_code == 403
    no_token = await web.client.post("/consola/nuevo", data={"description": DESCRIPTION, **CITIZEN})
    assert no_token.status_code == 403
    async with web.deps.uow() as uow:
        case = await get_case(uow, tracking_code=code)
        assert case.state == "received"
        count = len(list(await uow.session.scalars(select(CaseRow.id))))
    assert count == 1


async def test_presencial_form_shows_spanish_errors_next_to_fields_and_stores_nothing(
    web: Web,
) -> None:
    csrf = await sign_in(web.client, STAFF_TOKEN)
    response = await web.client.post(
        "/consola/nuevo",
        data={
            "csrf": csrf,
            "kind": "denuncia",
            "description": "corto",
            "citizen.email": "sin-arroba",
        },
    )
    assert response.status_code == 422
    html = response.text
    check_page(html)
    for field, words in (
        ("description", "entre 10 y 4000"),
        ("citizen-full_name", "obligatorio para una denuncia"),
        ("citizen-id_number", "identifíquese debidamente"),
        ("citizen-email", "correo electrónico inválido"),
        ("notify", "al menos un lugar donde recibir notificaciones"),
    ):
        match = re.search(rf'id="error-{field}">([^<]+)<', html)
        assert match and words in match.group(1), field
    assert 'aria-invalid="true" aria-describedby="error-description"' in html
    assert 'value="sin-arroba"' in html  # what was typed is kept
    async with web.deps.uow() as uow:
        assert list(await uow.session.scalars(select(CaseRow.id))) == []


async def test_case_page_offers_exactly_the_allowed_actions_and_tracking_hides_personal_data(
    web: Web,
) -> None:
    csrf = await sign_in(web.client, STAFF_TOKEN)
    code = await file_presencial(web.client, csrf)
    lifecycle = new_lifecycle()
    for state, step in (
        ("received", None),
        ("classified", ("classify", {"kind": "denuncia", "category": "Obras"})),
        ("remitted", ("remit", {"department": "obras"})),
    ):
        if step:
            action, data = step
            previous = "received" if action == "classify" else "classified"
            response = await act(web.client, csrf, code, action, estado=previous, **data)
            assert response.status_code == 303, response.text
        page = (await web.client.get(f"/consola/casos/{code}")).text
        offered = set(re.findall(rf'action="/consola/casos/{code}/([a-z_]+)"', page))
        # Staff are offered what the state allows, staff may do and fits the case (an unjoined
        # case is not offered 'separate'; a remitted case: nothing, the department answers it).
        async with web.deps.uow() as uow:
            case = await get_case(uow, tracking_code=code)
            assert case.state == state
            expected = set(offered_to(lifecycle, "staff", case))
        assert "separate" not in expected
        assert offered == expected, state
        assert "Ana María Pérez" in page and "8-123-4567" in page  # staff see all data

    tracking = await web.client.get(f"/seguimiento/{code}")
    assert tracking.status_code == 200
    check_page(tracking.text)
    assert "Remitido a la dependencia responsable" in tracking.text
    # 30 business days after Monday 3 March 2025; Carnival Tuesday (4 March) does not count.
    assert "15 de abril de 2025" in tracking.text
    for personal in ("Ana", "Pérez", "8-123-4567", "6123", "ana.perez", DESCRIPTION[:20]):
        assert personal not in tracking.text
    # The form accepts a sloppy code and redirects to the canonical page.
    sloppy = await web.client.get("/seguimiento", params={"codigo": code.lower().replace("-", " ")})
    assert sloppy.status_code == 303 and sloppy.headers["location"] == f"/seguimiento/{code}"
    typo = await web.client.get(
        "/seguimiento", params={"codigo": code[:-1] + ("A" if code[-1] != "A" else "B")}
    )
    assert typo.status_code == 422 and "mal escrito" in typo.text


async def test_department_sees_only_its_cases_answers_and_the_router_inbox_is_marked(
    web: Web,
) -> None:
    staff = httpx.AsyncClient(transport=web.client._transport, base_url="http://testserver")
    async with staff:
        csrf = await sign_in(staff, STAFF_TOKEN)
        ours = await file_presencial(staff, csrf)
        theirs = await file_presencial(staff, csrf)
        for code, department in ((ours, "obras"), (theirs, "vias")):
            await act(staff, csrf, code, "classify", estado="received", kind="denuncia")
            assert (
                await act(staff, csrf, code, "remit", estado="classified", department=department)
            ).status_code == 303

    dept_csrf = await sign_in(web.client, OBRAS_TOKEN)
    listing = (await web.client.get("/consola")).text
    assert ours in listing and theirs not in listing
    assert (await web.client.get(f"/consola/casos/{theirs}")).status_code == 404
    refused = await act(
        web.client, dept_csrf, theirs, "respond", estado="remitted", response="No es nuestro"
    )
    assert refused.status_code == 404
    not_allowed = await act(
        web.client,
        dept_csrf,
        ours,
        "decline",
        estado="remitted",
        reason_code="duplicada",
        reason="xx",
    )
    assert not_allowed.status_code == 403

    page = (await web.client.get(f"/consola/casos/{ours}")).text
    offered = set(re.findall(rf'action="/consola/casos/{ours}/([a-z_]+)"', page))
    assert offered == {"respond", "return"}
    short = await act(web.client, dept_csrf, ours, "respond", estado="remitted", response="x")
    assert short.status_code == 422 and 'id="error-response"' in short.text

    done = await act(
        web.client,
        dept_csrf,
        ours,
        "respond",
        estado="remitted",
        response="Se inspeccionó la obra y se ordenó su suspensión.",
    )
    assert done.status_code == 303
    async with web.deps.uow() as uow:
        case = await get_case(uow, tracking_code=ours)
        assert case.state == "resolved" and case.resolution_path == "department"
        responded = await uow.session.scalar(
            select(OutboxRow).where(OutboxRow.event_type == "DepartmentResponded")
        )
        assert responded is not None and responded.routing_key == "case.responded.obras"
        marked = await uow.session.scalar(
            select(InboxRow).where(
                InboxRow.consumer == "router", InboxRow.event_id == responded.event_id
            )
        )
        assert marked is not None
    assert ours not in (await web.client.get("/consola")).text
    assert "Resuelto" in (await web.client.get(f"/seguimiento/{ours}")).text


async def test_stale_form_is_refused_with_409(web: Web) -> None:
    csrf = await sign_in(web.client, STAFF_TOKEN)
    code = await file_presencial(web.client, csrf)
    await act(web.client, csrf, code, "classify", estado="received", kind="denuncia")
    stale = await act(
        web.client,
        csrf,
        code,
        "decline",
        estado="received",
        reason_code="duplicada",
        reason="duplicado",
    )
    assert stale.status_code == 409 and "cambió de estado" in stale.text
    async with web.deps.uow() as uow:
        assert (await get_case(uow, tracking_code=code)).state == "classified"


async def test_inbox_highlights_near_and_overdue_cases(web: Web) -> None:
    csrf = await sign_in(web.client, STAFF_TOKEN)
    code = await file_presencial(web.client, csrf)
    inbox = (await web.client.get("/consola")).text
    assert "fila-vencida" not in inbox and "fila-proxima" not in inbox
    web.clock.advance(timedelta(days=40))  # Saturday 12 April: due 15 April, 2 business days left
    await sign_in(web.client, STAFF_TOKEN)  # the console's session has long expired
    inbox = (await web.client.get("/consola")).text
    assert re.search(
        rf'<tr class="fila-proxima">\s*<th scope="row"><a href="/consola/casos/{code}"', inbox
    )
    web.clock.advance(timedelta(days=5))
    await sign_in(web.client, STAFF_TOKEN)
    inbox = (await web.client.get("/consola")).text
    assert re.search(
        rf'<tr class="fila-vencida">\s*<th scope="row"><a href="/consola/casos/{code}"', inbox
    )
    assert "Vencido hace" in inbox
    page = (await web.client.get("/transparencia")).text
    assert re.search(r'<p class="numero">1</p><p>abiertos fuera de plazo</p>', page)


async def test_transparency_page_and_csv_give_the_same_numbers(web: Web) -> None:
    csrf = await sign_in(web.client, STAFF_TOKEN)
    codes = [await file_presencial(web.client, csrf) for _ in range(3)]
    for code in codes[:2]:
        await act(web.client, csrf, code, "classify", estado="received", kind="denuncia")
        await act(web.client, csrf, code, "start_inspection", estado="classified")
    web.clock.advance(timedelta(days=7))  # Monday 10 March: 4 business days (Carnival Tuesday)
    csrf = await sign_in(web.client, STAFF_TOKEN)  # the console's session has expired
    response = await act(
        web.client,
        csrf,
        codes[0],
        "record_findings",
        estado="inspection",
        findings="Se verificó y corrigió la situación.",
    )
    assert response.status_code == 303 and "hecho=" in response.headers["location"]
    page = (await web.client.get("/transparencia")).text
    check_page(page)
    assert page.count("<svg") == 4 and 'role="img"' in page
    csv_text = (await web.client.get("/transparencia.csv")).text
    lines = set(csv_text.splitlines())
    assert "cases_total,,3," in lines
    assert "cases_by_kind,denuncia,3," in lines
    assert "cases_by_channel,presencial,3," in lines
    assert "cases_by_month,2025-03,3," in lines
    assert "median_business_days_to_resolution,inspection,4,1" in lines
    assert "open_cases,,2," in lines and "overdue_open_cases,,0," in lines
    assert "resolved_within_legal_term,,1,1" in lines
    assert re.search(r"<td>4</td><td>1 <span class=\"etiqueta neutra\">muestra pequeña", page)
    assert "100 %" in page


def test_figures_count_overdue_open_cases_as_late_and_keep_counts_with_medians() -> None:
    from shared.calendar import BusinessCalendar
    from shared.config import Department, InstitutionConfig

    config = InstitutionConfig(
        departments=[Department(code="obras", name="Obras", email="obras@example.com")]
    )
    day = START

    def facts(
        path: str | None,
        resolved_after: int | None,
        *,
        due_days: int = 40,
        state: str = "resolved",
        department: str | None = "obras",
    ) -> CaseFacts:
        return CaseFacts(
            kind="denuncia",
            channel="311",
            state=state,
            department=department,
            resolution_path=path,
            received_at=day,
            due_at=day + timedelta(days=due_days),
            resolved_at=None if resolved_after is None else day + timedelta(days=resolved_after),
        )

    cases = [
        facts("department", 7),  # 4 business days (Carnival Tuesday), on time
        facts("department", 14),  # 9 business days, on time
        facts("department", 50),  # late
        facts(None, None, due_days=10, state="remitted"),  # open and overdue
        facts(None, None, due_days=90, state="classified"),  # open, inside its term
    ]
    data = figures(cases, day + timedelta(days=60), BusinessCalendar(), config)
    assert (data.decided, data.on_time, data.open_count, data.overdue_count) == (4, 2, 2, 1)
    assert data.on_time_share == 0.5
    [median] = data.medians
    assert (median.label, median.median_days, median.count, median.small) == ("Obras", 9.0, 3, True)
    assert "resolved_within_legal_term_share,,0.5000,4" in to_csv(data)


async def test_every_surface_agrees_on_which_cases_are_overdue(web: Web) -> None:
    """The API's filter, the console's rows, the transparency figures and /metrics all ask the
    one rule (shared/domain/clocks.py): the legal term, the department's while remitted, and a
    pending recurso's (the transparency figure counts the open petitions: the handling's terms)."""
    csrf = await sign_in(web.client, STAFF_TOKEN)
    codes = [await file_presencial(web.client, csrf) for _ in range(7)]
    now = web.clock.now()
    past, future = now - timedelta(days=1), now + timedelta(days=20)
    # (state, legal due, department, department due): overdue are the first two only.
    seeded = [
        ("inspection", past, None, None),  # the legal term has passed
        ("remitted", future, "obras", past),  # the department's term has passed
        ("remitted", future, "obras", future),  # both terms running
        ("resolved", past, None, None),  # decided: no term runs
        ("classified", future, None, past),  # a stale department date, no longer remitted
        ("reconsideration", past, None, past),  # the recurso's term has passed
        ("appeal", past, None, future),  # the recurso's term runs (the legal one does not)
    ]
    async with web.deps.uow() as uow:
        for code, (state, due, department, department_due) in zip(codes, seeded, strict=True):
            case = await get_case(uow, tracking_code=code)
            case.kind, case.state, case.due_at = "denuncia", state, due
            case.department, case.department_due_at = department, department_due
            if state == "resolved":
                case.resolved_at, case.resolution_path = now, "inspection"
            if state in ("reconsideration", "appeal"):
                case.resolved_at, case.resolution_path = past, "inspection"
                case.recourse, case.recourse_due_at = state, department_due
                case.department_due_at = None
    handling = set(codes[:2])
    overdue = handling | {codes[5]}

    listed = await web.client.get(
        "/api/v1/cases",
        params={"overdue": "true"},
        headers={"Authorization": f"Bearer {STAFF_TOKEN}"},
    )
    assert listed.status_code == 200, listed.text
    assert {item["tracking_code"] for item in listed.json()["items"]} == overdue

    inbox = (await web.client.get("/consola")).text
    late_rows = set(
        re.findall(
            r'<tr class="fila-vencida">\s*<th scope="row"><a href="/consola/casos/([^"]+)"', inbox
        )
    )
    assert late_rows == overdue

    lines = set((await web.client.get("/transparencia.csv")).text.splitlines())
    assert f"overdue_open_cases,,{len(handling)}," in lines

    metrics = (await web.client.get("/metrics")).text
    assert re.search(rf"^defensa311_cases_overdue {len(overdue)}(\.0)?$", metrics, re.M), metrics
