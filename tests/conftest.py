from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support import fresh_database, fresh_vhost


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
