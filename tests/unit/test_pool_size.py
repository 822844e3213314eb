"""Each process's database pool holds what its own loops use at once, so a steady flow does not
open and close overflow connections (each one a PostgreSQL backend forked)."""

from __future__ import annotations

from services.deadlines.app import service as deadlines
from services.intake.app import service as intake
from services.notifier.app import service as notifier
from services.notifier.delivery import CONCURRENCY
from services.router.app import service as router
from shared.runtime import Runtime, pool_size
from shared.settings import load_settings

POSTGRES = "postgresql+asyncpg://nobody@127.0.0.1:1/none"  # never connected to here


def test_the_notifier_pool_fits_its_deliveries_in_flight() -> None:
    settings = load_settings(database_url=POSTGRES, db_pool_size=5)
    assert pool_size(settings, [notifier()]) >= CONCURRENCY + 3
    assert pool_size(settings, [intake()]) == 5
    assert pool_size(settings, [router()]) == pool_size(settings, [deadlines()]) == 5
    # `run all`: one pool for the four, at least the largest need
    assert pool_size(settings, [intake(), router(), deadlines(), notifier()]) == CONCURRENCY + 3
    # a larger setting wins
    assert pool_size(load_settings(database_url=POSTGRES, db_pool_size=30), [notifier()]) == 30


async def test_the_runtime_builds_its_engine_with_that_pool() -> None:
    settings = load_settings(database_url=POSTGRES, db_pool_size=5)
    runtime = Runtime(settings, [notifier()])
    engine = runtime.deps.sessionmaker.kw["bind"]
    try:
        assert engine.pool.size() == CONCURRENCY + 3
    finally:
        await engine.dispose()
