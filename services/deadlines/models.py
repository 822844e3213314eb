"""The deadlines service's own tables.

``deadline_clocks``: one row per clock (the legal term of a case, or one remittance's department
term), with the next alert to send (``next_fire_at``, ``next_threshold``; null once nothing is
left). The sweep reads only rows whose ``next_fire_at`` has come, through a partial index on that
column, so its cost grows with the due rows, not with the open clocks.

``deadline_stops``: every stop the service has been told of (resolution, closing, a department's
answer or return). Events can arrive out of order (a redelivery goes to the back of the queue): a
stop is kept even when its clock is not known yet, so a late start is opened already stopped.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models import Base, BigId

LEGAL = "legal"
DEPARTMENT = "department"
#: A pending reconsideración or apelación: the term to decide it.
RECOURSE = "recourse"

_HAS_NEXT = text("next_fire_at IS NOT NULL")


class ClockRow(Base):
    __tablename__ = "deadline_clocks"
    __table_args__ = (
        Index(
            "ix_deadline_clocks_next_fire",
            "next_fire_at",
            postgresql_where=_HAS_NEXT,
            sqlite_where=_HAS_NEXT,
        ),
        Index("ix_deadline_clocks_case", "case_id", "clock"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    start_event_id: Mapped[str] = mapped_column(String(36), unique=True)
    case_id: Mapped[str] = mapped_column(String(36))
    tracking_code: Mapped[str] = mapped_column(String(20))
    clock: Mapped[str] = mapped_column(String(16))
    department: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime]
    due_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]
    # The next alert: ``next_threshold`` working days before the due date (0 = missed).
    next_fire_at: Mapped[datetime | None]
    next_threshold: Mapped[int | None] = mapped_column(Integer)
    # The most urgent alert sent so far (0 = missed); only a more urgent one may follow.
    last_alert: Mapped[int | None] = mapped_column(Integer)


class StopRow(Base):
    """A stop of the clocks of a case started at or before ``stopped_at``.

    ``department`` null on a department stop means every department (the case is resolved or
    closed); on a legal stop it is always null.
    """

    __tablename__ = "deadline_stops"
    __table_args__ = (Index("ix_deadline_stops_case", "case_id", "clock"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36))
    case_id: Mapped[str] = mapped_column(String(36))
    clock: Mapped[str] = mapped_column(String(16))
    department: Mapped[str | None] = mapped_column(String(32))
    stopped_at: Mapped[datetime]
