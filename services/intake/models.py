"""Intake's own tables: console sessions and the key that signs their cookies."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.models import Base


class WebSessionRow(Base):
    """A signed-in console session; deleting the row ends it (sign-out, expiry)."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_expires_at", "expires_at"),)

    # SHA-256 of the session id: the id itself lives only in the browser's cookie.
    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    # SHA-256 of the token signed in with: removing the token ends its sessions.
    token_sha256: Mapped[str] = mapped_column(String(64))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class WebSessionKeyRow(Base):
    """The session-cookie signing key generated on first start (when none is configured)."""

    __tablename__ = "web_session_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
