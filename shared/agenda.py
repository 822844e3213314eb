"""The meeting's agenda: the sugerencias waiting in ``on_agenda``, oldest first.

The query is shared by the HTTP API (intake, one keyset page at a time) and the
``defensa311 agenda`` command (every page); the renderings carry no personal data (a
suggestion is presented by its tracking code).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, func, select

from shared.calendar import TZ
from shared.db.models import CaseHistoryRow, CaseRow
from shared.domain.clocks import Terms, legal_status
from shared.lifecycle import State
from shared.paging import MAX_PAGE_SIZE, Cursor, next_cursor
from shared.paging import after as after_cursor
from shared.uow import UnitOfWork


class AgendaItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    case_id: str
    tracking_code: str
    category: str | None
    description: str
    received_at: datetime
    added_at: datetime
    due_at: datetime
    days_left: int


@dataclass(frozen=True)
class AgendaPage:
    items: list[AgendaItem]
    total: int
    next_cursor: str | None


def _on_agenda() -> list[ColumnElement[bool]]:
    return [CaseRow.state == State.ON_AGENDA.value, CaseRow.kind == "sugerencia"]


async def agenda_page(
    uow: UnitOfWork,
    terms: Terms,
    now: datetime,
    *,
    limit: int,
    after: Cursor | None = None,
) -> AgendaPage:
    """One page of the agenda (the one filed first on top), after ``after`` if given."""
    statement = select(CaseRow).where(*_on_agenda())
    if after is not None:
        statement = statement.where(
            after_cursor(after, CaseRow.received_at, CaseRow.id, newest_first=False)
        )
    rows = list(
        await uow.session.scalars(
            statement.order_by(CaseRow.received_at, CaseRow.id).limit(limit + 1)
        )
    )
    total = await uow.session.scalar(select(func.count()).select_from(CaseRow).where(*_on_agenda()))
    return AgendaPage(
        await _items(uow, rows[:limit], terms, now), total or 0, next_cursor(rows, limit)
    )


async def agenda(uow: UnitOfWork, terms: Terms, now: datetime) -> list[AgendaItem]:
    """Every sugerencia on the agenda, the one filed first on top (the printed agenda)."""
    items: list[AgendaItem] = []
    cursor: Cursor | None = None
    while True:
        page = await agenda_page(uow, terms, now, limit=MAX_PAGE_SIZE, after=cursor)
        items += page.items
        if page.next_cursor is None:
            return items
        cursor = Cursor.decode(page.next_cursor)


async def _items(
    uow: UnitOfWork, cases: list[CaseRow], terms: Terms, now: datetime
) -> list[AgendaItem]:
    added = await _added_at(uow, [c.id for c in cases])
    return [
        AgendaItem(
            case_id=case.id,
            tracking_code=case.tracking_code,
            category=case.category,
            description=case.description,
            received_at=case.received_at,
            added_at=added.get(case.id, case.updated_at),
            due_at=case.due_at,
            days_left=legal_status(case, now, terms).days_left,
        )
        for case in cases
    ]


async def _added_at(uow: UnitOfWork, case_ids: list[str]) -> dict[str, datetime]:
    if not case_ids:
        return {}
    rows = await uow.session.execute(
        select(CaseHistoryRow.case_id, CaseHistoryRow.at)
        .where(
            CaseHistoryRow.case_id.in_(case_ids),
            CaseHistoryRow.to_state == State.ON_AGENDA.value,
        )
        .order_by(CaseHistoryRow.at)
    )
    latest: dict[str, datetime] = {}
    for case_id, at in rows:
        latest[case_id] = at  # the last time it was put on the agenda
    return latest


def _local(instant: datetime) -> str:
    return instant.astimezone(TZ).strftime("%d/%m/%Y")


def _cell(text: str) -> str:
    # A table cell is one line, and a pipe would open a new column.
    return " ".join(text.split()).replace("|", "\\|")


def render_markdown(items: list[AgendaItem], *, office: str, now: datetime) -> str:
    """The agenda as a Markdown document to print for the meeting (Spanish)."""
    lines = [
        f"# Agenda de sugerencias — {office}",
        "",
        f"Preparada el {_local(now)}. Sugerencias pendientes de presentar: {len(items)}.",
        "",
    ]
    if not items:
        lines.append("No hay sugerencias en agenda.")
        return "\n".join(lines) + "\n"
    lines += [
        "| # | Código | Recibida | Categoría | Vence | Días hábiles restantes |",
        "|---|---|---|---|---|---|",
    ]
    for n, item in enumerate(items, 1):
        category = _cell(item.category or "Sin categoría")
        lines.append(
            f"| {n} | {item.tracking_code} | {_local(item.received_at)} | {category} | "
            f"{_local(item.due_at)} | {item.days_left} |"
        )
    lines.append("")
    for n, item in enumerate(items, 1):
        lines += [
            f"## {n}. {item.tracking_code}",
            "",
            f"- Categoría: {item.category or 'Sin categoría'}",
            f"- Recibida: {_local(item.received_at)}; en agenda desde: {_local(item.added_at)}",
            f"- Plazo legal: {_local(item.due_at)} ({item.days_left} días hábiles restantes)",
            "",
            *(f"> {line}" if line else ">" for line in item.description.splitlines()),
            "",
            "Decisión: ☐ aceptada  ☐ aceptada en parte  ☐ no aceptada",
            "",
        ]
    return "\n".join(lines)


def as_json(items: list[AgendaItem]) -> list[dict[str, Any]]:
    return [item.model_dump(mode="json") for item in items]
