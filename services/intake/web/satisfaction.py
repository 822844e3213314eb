"""The satisfaction survey's public figures (by department and by kind) and the count of
joined duplicates, computed in SQL.

For each group of closed cases: how many were closed, how many answered the survey (the
share answered) and the mean score (1–5) of those answered. Nothing personal: counts and a
mean, never a comment. A joined duplicate is counted once, with its main case.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute

from shared.db.models import CaseRow
from shared.domain.labels import KIND_LABELS
from shared.lifecycle import State
from shared.uow import UnitOfWork

#: The group of closed cases the office handled itself (inspection, meeting, declined).
OFFICE_GROUP = "Departamento Defensa del Usuario"


@dataclass(frozen=True)
class SurveyGroup:
    key: str
    label: str
    closed: int
    answered: int
    mean_score: float | None

    @property
    def share_answered(self) -> float | None:
        return self.answered / self.closed if self.closed else None


@dataclass(frozen=True)
class SurveyFigures:
    by_department: list[SurveyGroup]
    by_kind: list[SurveyGroup]
    #: Cases joined to another as duplicates: counted once, with their main case.
    joined: int = 0

    @property
    def answered(self) -> int:
        return sum(g.answered for g in self.by_kind)


async def _grouped(
    uow: UnitOfWork, column: InstrumentedAttribute[str | None], label: Callable[[str], str]
) -> list[SurveyGroup]:
    query = (
        select(
            column,
            func.count(),
            func.count(CaseRow.survey_score),
            func.avg(CaseRow.survey_score),
        )
        .where(CaseRow.state == State.CLOSED.value, CaseRow.duplicate_of.is_(None))
        .group_by(column)
    )
    rows: Sequence[tuple[str | None, int, int, float | None]] = [
        tuple(row) for row in (await uow.session.execute(query)).all()
    ]
    groups = [
        SurveyGroup(
            key or "",
            label(key or ""),
            int(closed),
            int(answered),
            None if mean is None else round(float(mean), 2),
        )
        for key, closed, answered, mean in rows
    ]
    return sorted(groups, key=lambda g: (-g.closed, g.label))


async def load_survey(uow: UnitOfWork, department_name: Callable[[str], str]) -> SurveyFigures:
    joined = await uow.session.scalar(
        select(func.count()).select_from(CaseRow).where(CaseRow.duplicate_of.is_not(None))
    )
    return SurveyFigures(
        joined=int(joined or 0),
        by_department=await _grouped(
            uow, CaseRow.department, lambda code: department_name(code) if code else OFFICE_GROUP
        ),
        by_kind=await _grouped(
            uow, CaseRow.kind, lambda kind: KIND_LABELS.get(kind, "Sin clasificar")
        ),
    )


def survey_csv_rows(figures: SurveyFigures) -> list[list[object]]:
    """The CSV's rows for the survey, in its ``figure,group,value,count`` shape."""
    rows: list[list[object]] = [["cases_joined_as_duplicates", "", figures.joined, ""]]
    for figure, groups, office in (
        ("department", figures.by_department, "office"),
        ("kind", figures.by_kind, "unclassified"),
    ):
        for g in groups:
            key = g.key or office
            share = g.share_answered
            shown = "" if share is None else f"{share:.4f}"
            rows.append([f"survey_answered_share_by_{figure}", key, shown, g.closed])
            rows.append(
                [
                    f"survey_mean_score_by_{figure}",
                    key,
                    "" if g.mean_score is None else f"{g.mean_score:.2f}",
                    g.answered,
                ]
            )
    return rows
