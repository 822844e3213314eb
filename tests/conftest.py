from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.support import (
    SERVICE_FIXTURES,
    VHOSTS,
    free_port,
    fresh_database,
    fresh_vhost,
    require_connected,
    running_test,
)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that needs RabbitMQ or PostgreSQL carries ``@pytest.mark.connected``: one that
    asks for their fixtures without it fails here, before anything is set up."""
    running_test[:] = [item]
    needs = SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    if needs:
        require_connected(" and ".join(sorted(needs)))


def pytest_runtest_teardown(item: pytest.Item) -> None:
    running_test[:] = [item]


def pytest_runtest_logfinish() -> None:
    running_test.clear()


def pytest_sessionfinish() -> None:
    VHOSTS.close()


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """A RabbitMQ vhost of this test's own (from the pool: see ``tests.support.VhostPool``)."""
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
