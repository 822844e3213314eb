"""Tables of the shared core: cases, their audit history, the outbox and the inbox.

Service-owned tables (deadline clocks, notification log) live beside their service but
share :class:`Base` so one Alembic history migrates everything.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.db.types import UTCDateTime

# SQLite autoincrements only INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class CaseRow(Base):
    __tablename__ = "cases"
    # The duplicate search's prefilter: a bounding box on the case's coordinates.
    __table_args__ = (Index("ix_cases_lat_lon", "lat", "lon"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tracking_code: Mapped[str] = mapped_column(String(20), unique=True)
    external_ref: Mapped[str | None] = mapped_column(String(200), unique=True)
    channel: Mapped[str] = mapped_column(String(16), index=True)
    kind: Mapped[str | None] = mapped_column(String(16), index=True)
    category: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    citizen: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    notify: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    location: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), index=True)
    department: Mapped[str | None] = mapped_column(String(32), index=True)
    matched_rule: Mapped[str | None] = mapped_column(String(100))
    received_at: Mapped[datetime]
    due_at: Mapped[datetime] = mapped_column(index=True)
    department_due_at: Mapped[datetime | None]
    remitted_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(Text)
    resolution_path: Mapped[str | None] = mapped_column(String(16))
    decision: Mapped[str | None] = mapped_column(String(32))
    inspector: Mapped[str | None] = mapped_column(String(200))
    return_count: Mapped[int] = mapped_column(Integer, default=0)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime]
    # Why the due dates last moved (a closure by decree), shown with them on the tracking page.
    due_note: Mapped[str | None] = mapped_column(Text)
    # The citizen's clave, only as its scrypt hash (shared.domain.citizen_key).
    clave_hash: Mapped[str | None] = mapped_column(String(200))
    # Times the citizen said "no está resuelto" and the case was handled again.
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    # The satisfaction survey after closure: once, 1–5 and an optional comment.
    survey_score: Mapped[int | None] = mapped_column(Integer)
    survey_comment: Mapped[str | None] = mapped_column(Text)
    survey_at: Mapped[datetime | None]
    # The location's coordinates as columns, indexed for the duplicate search.
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    # A joined case follows this one (the main case) until it is separated again.
    duplicate_of: Mapped[str | None] = mapped_column(ForeignKey("cases.id"), index=True)
    # The last recurso filed against the standing decision (``reconsideration`` | ``appeal``),
    # when it was filed and when it must be decided (the recourse clock).
    recourse: Mapped[str | None] = mapped_column(String(16))
    recourse_filed_at: Mapped[datetime | None]
    recourse_due_at: Mapped[datetime | None]
    # A confirmed reconsideración: the apelación's term runs from this decision.
    reconsidered_at: Mapped[datetime | None]


class CaseHistoryRow(Base):
    """The audit trail: who did what, when, from which state to which, and why."""

    __tablename__ = "case_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Write-side only: tells the unit of work to insert a new case before its first audit row
    # (one flush at commit instead of one per case). Never loaded.
    case: Mapped[CaseRow] = relationship(lazy="raise")


class DuplicateCandidateRow(Base):
    """An open case that looked like this one when it was filed, and why (the duplicate
    search's reason: near and of the same category, or very similar text)."""

    __tablename__ = "duplicate_candidates"

    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    candidate_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    reason: Mapped[str] = mapped_column(String(200))
    found_at: Mapped[datetime]


class ClosureRow(Base):
    """A day closed by decree added at run time (``defensa311 calendar close``)."""

    __tablename__ = "calendar_closures"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    reason: Mapped[str] = mapped_column(String(500))
    suspends_terms: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(100))


class OutboxRow(Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "published_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    event_type: Mapped[str] = mapped_column(String(40))
    routing_key: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None]
    # Until then the process that committed the row publishes it from memory; pollers take
    # only rows with no lease (written elsewhere, or a failed publish) or an expired one.
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class InboxRow(Base):
    """One row per (consumer, event_id) handled: what makes consumers idempotent."""

    __tablename__ = "inbox"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime]
