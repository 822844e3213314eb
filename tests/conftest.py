from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.support import free_port, fresh_database, fresh_vhost


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """A RabbitMQ vhost of this test's own, deleted afterwards."""
    with fresh_vhost() as url:
        yield url


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A PostgreSQL database of this test's own, dropped afterwards."""
    async with fresh_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite+aiosqlite:///{tmp_path}/defensa311.db"


class _SmtpSink:
    """Accepts every e-mail (the notifier needs a real server to talk to)."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


@pytest.fixture
def smtp_port() -> Iterator[int]:
    """A real SMTP server (aiosmtpd) on a free port that accepts and drops every e-mail."""
    port = free_port()
    controller = Controller(_SmtpSink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
