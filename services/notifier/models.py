"""The notifier's own table: the notification log, one row per (event, recipient), ever."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models import Base, BigId


class NotificationRow(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("event_id", "recipient", name="uq_notifications_event_recipient"),
        Index("ix_notifications_due", "status", "next_attempt_at"),
        Index("ix_notifications_case", "case_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(40))
    case_id: Mapped[str | None] = mapped_column(String(36))
    tracking_code: Mapped[str | None] = mapped_column(String(20))
    template: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(16))  # email | webhook | sms | in_person
    recipient: Mapped[str] = mapped_column(String(320))
    recipient_masked: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed | task | done
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
