"""Keyset (cursor) pages: every list of cases is ordered by an instant and the case id.

A cursor is the (instant, id) of the last item of a page, opaque to the client
(base64url of JSON). The next page is the rows strictly after it in the list's order, so a
page deep in years of cases costs what the first one does, and rows added meanwhile
neither repeat nor shift items between pages.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, func, literal, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from shared.contract import FieldError

#: Every list answers at most this many items a page, whatever it is asked.
MAX_PAGE_SIZE = 200

#: A list counts its matches up to this many; beyond it, the total reads "more than".
COUNT_CAP = 10_000


class InvalidCursor(ValueError):
    def __init__(self) -> None:
        super().__init__("cursor inválido")
        self.error = FieldError(
            field="cursor",
            rule="cursor_format",
            message="cursor inválido; use el valor next_cursor de la página anterior",
        )


@dataclass(frozen=True)
class Cursor:
    at: datetime
    id: str

    def encode(self) -> str:
        raw = json.dumps([self.at.isoformat(), self.id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            at, case_id = json.loads(raw)
            instant = datetime.fromisoformat(at)
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
            raise InvalidCursor() from None
        if instant.tzinfo is None or not isinstance(case_id, str) or len(case_id) > 64:
            raise InvalidCursor()
        return cls(instant, case_id)


def after(cursor: Cursor, at: Any, row_id: Any, *, newest_first: bool) -> ColumnElement[bool]:
    """Rows after ``cursor`` in the order (``at`` desc or asc, then ``id`` asc).

    The first condition alone bounds the list's index scan (``at <= cursor.at``); the second
    only sorts out the rows of the cursor's own instant."""
    if newest_first:
        return and_(at <= cursor.at, or_(at < cursor.at, row_id > cursor.id))
    return and_(at >= cursor.at, or_(at > cursor.at, row_id > cursor.id))


def next_cursor(rows: list[Any], limit: int, at: str = "received_at") -> str | None:
    """The cursor of the page after ``rows`` (fetched with ``limit + 1``), or None at the end."""
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return Cursor(getattr(last, at), last.id).encode()


async def capped_count(
    session: AsyncSession,
    table: FromClause,
    where: Sequence[ColumnElement[bool]],
    cap: int | None = None,
    order_by: Sequence[Any] = (),
) -> tuple[int, bool]:
    """How many rows of ``table`` match ``where``, counted up to ``cap`` (default
    :data:`COUNT_CAP`): ``(count, False)`` when exact, ``(cap, True)`` when there are more.
    Reading at most ``cap + 1`` index entries, a list over years of cases costs what one over
    a week does. ``order_by`` (the list's order) makes the count walk the rows as the page
    does: for a search whose words match many cases, the first ``cap`` found along the list's
    index, rather than every match gathered from the text index first."""
    cap = COUNT_CAP if cap is None else cap
    bounded = (
        select(literal(1))
        .select_from(table)
        .where(*where)
        .order_by(*order_by)
        .limit(cap + 1)
        .subquery()
    )
    counted = int(await session.scalar(select(func.count()).select_from(bounded)) or 0)
    return (cap, True) if counted > cap else (counted, False)


async def capped_counts(
    session: AsyncSession,
    table: FromClause,
    groups: Mapping[str, Sequence[ColumnElement[bool]]],
    cap: int | None = None,
) -> dict[str, tuple[int, bool]]:
    """:func:`capped_count` of several filters in one statement, by key."""
    cap = COUNT_CAP if cap is None else cap
    parts = [
        select(literal(key).label("key"), func.count().label("n")).select_from(
            select(literal(1)).select_from(table).where(*where).limit(cap + 1).subquery()
        )
        for key, where in groups.items()
    ]
    rows = await session.execute(union_all(*parts))
    return {str(key): (cap, True) if n > cap else (int(n), False) for key, n in rows}
