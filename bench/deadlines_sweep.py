"""Benchmark: the deadline sweep costs O(due clocks), not O(open clocks).

Creates a fresh PostgreSQL database (dropped at the end), fills it with 1,000,000 open clocks of
which 1,000 are due (one ``INSERT … SELECT generate_series``), times the sweep of those 1,000
(claim with ``FOR UPDATE SKIP LOCKED``, compute, write the outbox, advance the clocks), then does
the same over 1,000 open clocks (the same 1,000 due) and prints both times and their ratio. The
goal is a ratio under 2.

    python bench/deadlines_sweep.py [--open 1000000] [--due 1000] [--runs 5]

The server is ``DEFENSA311_BENCH_DATABASE_URL`` (default
``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``); only the new database is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

from services.deadlines.schedule import AlertPolicy
from services.deadlines.sweep import sweep
from shared.calendar import TZ, BusinessCalendar, CalendarKind
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.uow import UnitOfWork

SERVER = os.environ.get(
    "DEFENSA311_BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
STARTED = datetime(2026, 3, 2, 10, 30, tzinfo=TZ)
DUE = datetime(2026, 4, 14, 23, 59, 59, tzinfo=TZ)
NOW = datetime(2026, 4, 2, 0, 0, tzinfo=TZ)  # the 7-business-day alert of DUE
POLICY = AlertPolicy(thresholds=(7, 3, 1), calendar=BusinessCalendar(CalendarKind.BUSINESS))

# Clocks 1..due are due now; the others fire later (spread over the next ~2 months) or are
# stopped (next_fire_at null), like a real backlog of open cases.
FILL = """
INSERT INTO deadline_clocks (start_event_id, case_id, tracking_code, clock, department,
                             started_at, due_at, stopped_at, next_fire_at, next_threshold)
SELECT md5('start' || i)::uuid::text, md5('case' || i)::uuid::text,
       'D311-2026-' || lpad(i::text, 6, '0'), 'legal', NULL,
       $1::timestamptz,
       $2::timestamptz + (CASE WHEN i > $4 THEN i % 40 ELSE 0 END) * interval '1 day', NULL,
       CASE WHEN i <= $4 THEN $3::timestamptz
            ELSE $3::timestamptz + (1 + i % 86400) * interval '1 minute' END,
       7
FROM generate_series(1, $5) AS i
"""
RESET = """
UPDATE deadline_clocks SET next_fire_at = $1, next_threshold = 7, last_alert = NULL
WHERE id <= $2
"""


def dsn(url: str, database: str | None = None) -> str:
    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    path = "/" + database if database else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


async def fill(conn: asyncpg.Connection, open_clocks: int, due: int) -> float:
    began = time.perf_counter()
    await conn.execute("TRUNCATE deadline_clocks, outbox RESTART IDENTITY")
    await conn.execute(FILL, STARTED, DUE, NOW, due, open_clocks)
    await conn.execute("VACUUM ANALYZE deadline_clocks")
    return time.perf_counter() - began


async def time_sweeps(url: str, conn: asyncpg.Connection, due: int, runs: int) -> list[float]:
    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    times: list[float] = []
    try:
        for _ in range(runs + 1):  # the first run warms caches and is not counted
            await conn.execute(RESET, NOW, due)
            await conn.execute("TRUNCATE outbox")
            await conn.execute("VACUUM ANALYZE deadline_clocks")
            began = time.perf_counter()
            result = await sweep(lambda: UnitOfWork(sessionmaker), POLICY, NOW)
            times.append(time.perf_counter() - began)
            if result.near != due or result.claimed != due:
                raise SystemExit(f"sweep sent {result.near} alerts for {due} due clocks")
    finally:
        await engine.dispose()
    return times[1:]


async def explain(conn: asyncpg.Connection) -> str:
    rows = await conn.fetch(
        "EXPLAIN SELECT * FROM deadline_clocks WHERE next_fire_at <= $1 "
        "ORDER BY next_fire_at LIMIT 500 FOR UPDATE SKIP LOCKED",
        NOW,
    )
    return "\n".join("    " + r[0] for r in rows)


async def main(open_clocks: int, due: int, runs: int) -> None:
    name = f"d311_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(dsn(SERVER))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(SERVER)._replace(path="/" + name))
    try:
        engine = make_engine(url)
        await upgrade(engine)
        await engine.dispose()
        import logging

        logging.getLogger("defensa311").setLevel(logging.WARNING)
        conn = await asyncpg.connect(dsn(url))
        try:
            filled = await fill(conn, open_clocks, due)
            big = await time_sweeps(url, conn, due, runs)
            plan = await explain(conn)
            await fill(conn, due, due)
            small = await time_sweeps(url, conn, due, runs)
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    big_s, small_s = statistics.median(big), statistics.median(small)
    print(f"filled {open_clocks:,} open clocks ({due:,} due) in {filled:.1f} s")
    print(f"claim plan with {open_clocks:,} open clocks:\n{plan}")
    print(
        f"sweep of {due:,} due among {open_clocks:,} open: median {big_s * 1000:.1f} ms "
        f"(runs: {', '.join(f'{t * 1000:.0f}' for t in big)} ms)"
    )
    print(
        f"sweep of {due:,} due among {due:,} open:     median {small_s * 1000:.1f} ms "
        f"(runs: {', '.join(f'{t * 1000:.0f}' for t in small)} ms)"
    )
    print(f"ratio: {big_s / small_s:.2f} (goal < 2)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--open", type=int, default=1_000_000, dest="open_clocks")
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.open_clocks, args.due, args.runs))
