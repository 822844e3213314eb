"""Public pages: the citizen's tracking page and the transparency figures (no personal data)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from services.intake.transparency import (
    SMALL_SAMPLE,
    Figures,
    FiguresCache,
    Snapshot,
    bar_chart_svg,
    load_figures,
    to_csv,
)
from shared.cases import CaseNotFound, get_case, history
from shared.db.models import CaseHistoryRow
from shared.domain.clocks import legal_status
from shared.domain.labels import action_label
from shared.evidence import of_case
from shared.lifecycle import is_open
from shared.runtime import Deps
from shared.tracking import normalize_tracking_code

if TYPE_CHECKING:
    from services.intake.web import Pages


@dataclass(frozen=True)
class PublicStep:
    at: datetime
    text: str


def public_timeline(rows: list[CaseHistoryRow]) -> list[PublicStep]:
    """State changes only, in plain Spanish: no actor, no reasons, no free text."""
    return [
        PublicStep(row.at, action_label(row.action))
        for row in rows
        if row.from_state != row.to_state or row.action == "file"
    ]


def install(app: FastAPI, deps: Deps, pages: Pages) -> None:
    def not_found(request: Request, message: str) -> Response:
        return pages.render(
            request,
            "no_encontrado.html",
            status_code=404,
            title="Caso no encontrado",
            section="seguimiento",
            message=message,
            back_href="/seguimiento",
            back_text="Consultar otro código",
        )

    @app.get("/seguimiento", include_in_schema=False)
    async def tracking_form(request: Request, codigo: str | None = None) -> Response:
        error = None
        if codigo is not None:
            try:
                code = normalize_tracking_code(codigo)
            except ValueError as exc:
                error = f"Código mal escrito: {exc}" if codigo.strip() else "Escriba el código."
            else:
                return RedirectResponse(f"/seguimiento/{code}", status_code=303)
        return pages.render(
            request,
            "seguimiento_form.html",
            status_code=422 if error else 200,
            title="Seguimiento de casos",
            section="seguimiento",
            code=codigo or "",
            error=error,
        )

    @app.get("/seguimiento/{tracking_code}", include_in_schema=False)
    async def tracking_page(request: Request, tracking_code: str) -> Response:
        try:
            code = normalize_tracking_code(tracking_code)
        except ValueError:
            return not_found(request, "El código está mal escrito. Revíselo e inténtelo de nuevo.")
        if code != tracking_code:
            return RedirectResponse(f"/seguimiento/{code}", status_code=308)
        now = deps.clock.now()
        async with deps.uow() as uow:
            try:
                case = await get_case(uow, tracking_code=code)
            except CaseNotFound:
                return not_found(request, "No hay ningún caso con ese código.")
            rows = await history(uow, case.id)
            shown = await of_case(uow, case.id, public_only=True)
        return pages.render(
            request,
            "seguimiento.html",
            title=f"Caso {case.tracking_code}",
            section="seguimiento",
            case=case,
            open=is_open(case.state),
            legal_days_left=legal_status(case, now, deps.cases.terms).days_left,
            timeline=public_timeline(rows),
            attachments=shown,
        )

    async def compute(now: datetime) -> Figures:
        async with deps.uow() as uow:
            return await load_figures(uow, now, deps.cases.terms.calendar, deps.config)

    ttl = timedelta(seconds=deps.settings.transparency_cache_seconds)
    cache = FiguresCache(ttl, compute, deps.clock.now)

    def validators(snapshot: Snapshot) -> dict[str, str]:
        return {
            "ETag": snapshot.etag,
            "Last-Modified": format_datetime(snapshot.computed_at.astimezone(UTC), usegmt=True),
            "Cache-Control": f"public, max-age={int(ttl.total_seconds())}",
        }

    @app.get("/transparencia", include_in_schema=False)
    async def transparency(request: Request) -> Response:
        snapshot = await cache.get()
        data = snapshot.figures
        charts = []
        for chart_id, title, header, rows in (
            ("tipo", "Casos por tipo", "Tipo", data.by_kind),
            ("canal", "Casos por canal", "Canal", data.by_channel),
            ("mes", "Casos recibidos por mes", "Mes", data.by_month),
        ):
            bars = [(label, float(n)) for _, label, n in rows]
            charts.append(
                {
                    "id": chart_id,
                    "title": title,
                    "group_header": header,
                    "rows": [(label, n) for _, label, n in rows],
                    "svg": bar_chart_svg(title, bars, chart_id=chart_id),
                }
            )
        medians_svg = bar_chart_svg(
            "Mediana de días hábiles hasta la resolución",
            [(m.label, m.median_days) for m in data.medians],
            unit=" d",
            notes=[f"(n={m.count})" for m in data.medians],
            chart_id="medianas",
        )
        page = pages.render(
            request,
            "transparencia.html",
            title="Transparencia",
            section="transparencia",
            data=data,
            charts=charts,
            medians_svg=medians_svg,
            small_sample=SMALL_SAMPLE,
        )
        # The page also shows who is signed in: no ETag, only the figures' age.
        page.headers["Last-Modified"] = validators(snapshot)["Last-Modified"]
        return page

    @app.get("/transparencia.csv", include_in_schema=False)
    async def transparency_csv(request: Request) -> Response:
        snapshot = await cache.get()
        headers = validators(snapshot)
        if snapshot.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        headers["Content-Disposition"] = 'attachment; filename="transparencia.csv"'
        return Response(
            to_csv(snapshot.figures), media_type="text/csv; charset=utf-8", headers=headers
        )
