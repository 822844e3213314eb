"""Reading a case and its audit trail."""

from __future__ import annotations

from sqlalchemy import select

from shared.db.models import CaseHistoryRow, CaseRow
from shared.lifecycle import DomainError
from shared.uow import UnitOfWork


class CaseNotFound(DomainError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"caso no encontrado: {ref}")
        self.ref = ref


async def get_case(
    uow: UnitOfWork,
    *,
    tracking_code: str | None = None,
    case_id: str | None = None,
    lock: bool = False,
) -> CaseRow:
    if case_id is not None and tracking_code is None:
        cached, row = uow.cached_case(case_id, lock=lock)
        if cached:
            if row is None:
                raise CaseNotFound(case_id)
            return row
    query = select(CaseRow)
    if tracking_code is not None:
        query = query.where(CaseRow.tracking_code == tracking_code)
    elif case_id is not None:
        query = query.where(CaseRow.id == case_id)
    else:
        raise ValueError("tracking_code or case_id")
    if lock and uow.is_postgres:
        query = query.with_for_update()
    row = await uow.session.scalar(query)
    if row is None:
        raise CaseNotFound(tracking_code or case_id or "")
    return row


async def history(uow: UnitOfWork, case_id: str) -> list[CaseHistoryRow]:
    rows = await uow.session.scalars(
        select(CaseHistoryRow)
        .where(CaseHistoryRow.case_id == case_id)
        .order_by(CaseHistoryRow.at, CaseHistoryRow.id)
    )
    return list(rows)
