"""The transparency figures' cache: one computation per TTL; figures a little past it are
answered at once while one recomputation runs; older ones are recomputed first."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.intake.web.transparency import Figures, FiguresCache

START = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


class Source:
    def __init__(self) -> None:
        self.now = START
        self.loads = 0
        self.release = asyncio.Event()
        self.release.set()

    def clock(self) -> datetime:
        return self.now

    async def load(self, _at: datetime) -> Figures:
        self.loads += 1
        await self.release.wait()
        return Figures(total=self.loads)


async def test_fresh_stale_and_expired_figures() -> None:
    source = Source()
    cache = FiguresCache(timedelta(seconds=30), source.load, source.clock, timedelta(minutes=15))
    first = await asyncio.gather(*(cache.get() for _ in range(5)))
    assert {s.figures.total for s in first} == {1} and source.loads == 1  # one computation

    source.now += timedelta(seconds=10)
    assert (await cache.get()).figures.total == 1 and source.loads == 1  # within the TTL

    # Past the TTL: the old figures at once, one recomputation behind them.
    source.now += timedelta(seconds=60)
    source.release.clear()
    answers = await asyncio.gather(*(cache.get() for _ in range(5)))
    assert {s.figures.total for s in answers} == {1}
    assert {s.computed_at for s in answers} == {START}  # Last-Modified tells their age
    assert source.loads == 2
    source.release.set()
    await asyncio.sleep(0)
    for _ in range(10):
        if (await cache.get()).figures.total == 2:
            break
        await asyncio.sleep(0.01)
    assert (await cache.get()).figures.total == 2 and source.loads == 2

    # After a quiet spell longer than the stale window: recomputed before answering.
    source.now += timedelta(hours=1)
    assert (await cache.get()).figures.total == 3


async def test_no_cache_computes_every_request() -> None:
    source = Source()
    cache = FiguresCache(timedelta(0), source.load, source.clock, timedelta(minutes=15))
    assert (await cache.get()).figures.total == 1
    assert (await cache.get()).figures.total == 2
