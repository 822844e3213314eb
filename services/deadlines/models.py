"""The deadlines service's own table: one row per running clock, indexed by next fire time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models import Base, BigId


class ClockRow(Base):
    __tablename__ = "deadline_clocks"
    __table_args__ = (
        Index("ix_deadline_clocks_next_fire", "next_fire_at"),
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
    # The next alert: ``next_threshold`` business days before the due date (0 = missed).
    next_fire_at: Mapped[datetime | None]
    next_threshold: Mapped[int | None] = mapped_column(Integer)
    last_alert: Mapped[int | None] = mapped_column(Integer)
