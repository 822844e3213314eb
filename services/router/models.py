"""The router's own table.

``duplicate_searches``: the new cases whose duplicate search at filing is still to run (one row
per case, written in the transaction that classified it, deleted by the transaction that stored
what the search found). See :mod:`services.router.duplicate_searches`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models import Base


class DuplicateSearchRow(Base):
    """A new case to search for possible duplicates, and when it was classified."""

    __tablename__ = "duplicate_searches"
    __table_args__ = (Index("ix_duplicate_searches_queued_at", "queued_at"),)

    case_id: Mapped[str] = mapped_column(String(36), ForeignKey("cases.id"), primary_key=True)
    queued_at: Mapped[datetime]
