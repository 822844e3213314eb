"""The duplicate search at filing, off the path to the department.

Classifying a new case queues its search (:func:`queue_search`: a ``duplicate_searches`` row in
the same transaction, one insert for a whole batch). The router's loop (:func:`search_loop`)
runs the queued searches once cases stop arriving for a moment, once a batch's worth (200)
waits, or when the oldest has waited ``[duplicates] search_within_seconds``, whichever comes
first: a batch of cases per transaction (:func:`search_queued`), which stores what it found
(``duplicate_candidates``, dated when the case was classified) and deletes their rows. So a
department receives a case without waiting for the search, and a burst of filings is searched
in a few statements, not one per consumer batch.

A crash loses nothing: a row stays until the transaction that stored its candidates commits,
and two routers never take the same row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL).

With ``[duplicates] hold_routing`` the route depends on the answer, so the router searches at
once instead (:func:`services.router.handlers.route_case`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from weakref import WeakKeyDictionary

from sqlalchemy import delete, func, insert, select

from services.router.models import DuplicateSearchRow
from shared.cases.duplicates import record_candidates_of
from shared.config import DuplicatePolicy
from shared.db.models import CaseRow
from shared.runtime import Deps
from shared.uow import UnitOfWork

log = logging.getLogger("defensa311.router")

#: How often the loop looks at the queue (seconds): also how long cases must stop arriving.
TICK_SECONDS = 1.0
#: Cases searched per transaction.
BATCH = 200
#: The longest wait after failed searches.
MAX_PAUSE_SECONDS = 60.0

#: The cases each open transaction queued (case id → when).
_QUEUED: WeakKeyDictionary[UnitOfWork, dict[str, datetime]] = WeakKeyDictionary()


def queue_search(uow: UnitOfWork, case: CaseRow, now: datetime) -> None:
    """Ask for ``case``'s duplicate search; the rows of a transaction are inserted at once,
    just before it commits."""
    queued = _QUEUED.get(uow)
    if queued is None:
        queued = _QUEUED[uow] = {}
        uow.before_commit(partial(_insert, uow, queued))
    queued.setdefault(case.id, now)


async def _insert(uow: UnitOfWork, queued: dict[str, datetime]) -> None:
    await uow.session.execute(
        insert(DuplicateSearchRow),
        [{"case_id": case_id, "queued_at": at} for case_id, at in queued.items()],
    )


async def search_queued(
    uow_factory: Callable[[], UnitOfWork], policy: DuplicatePolicy, limit: int = BATCH
) -> int:
    """Run the oldest ``limit`` queued searches in one transaction; return how many ran."""
    async with uow_factory() as uow:
        query = (
            select(DuplicateSearchRow.case_id, DuplicateSearchRow.queued_at)
            .order_by(DuplicateSearchRow.queued_at, DuplicateSearchRow.case_id)
            .limit(limit)
        )
        if uow.is_postgres:
            query = query.with_for_update(skip_locked=True)
        queued = {case_id: at for case_id, at in (await uow.session.execute(query)).all()}
        if not queued:
            return 0
        ids = sorted(queued)
        cases = await uow.session.scalars(select(CaseRow).where(CaseRow.id.in_(ids)))
        await record_candidates_of(
            uow, {case.id: (case, queued[case.id]) for case in cases}, policy
        )
        await uow.session.execute(
            delete(DuplicateSearchRow).where(DuplicateSearchRow.case_id.in_(ids))
        )
    return len(queued)


async def queued_count(uow_factory: Callable[[], UnitOfWork], cap: int = BATCH) -> int:
    """How many searches wait, counted up to ``cap`` (a backlog is not scanned whole)."""
    async with uow_factory() as uow:
        waiting = select(DuplicateSearchRow.case_id).limit(cap).subquery()
        count = await uow.session.scalar(select(func.count()).select_from(waiting))
        return int(count or 0)


async def search_loop(deps: Deps) -> None:
    """The router's loop: run the queued searches when a tick brought no new case, when a
    batch's worth waits, or when the oldest has waited ``search_within_seconds`` (measured
    here, not by the clock the cases are dated with). A failing search waits longer each
    time and tries fewer cases at once, down to one; a case whose search fails alone is given
    up (its case page still searches when it is opened), so it cannot hold back the rest."""
    policy = deps.config.duplicates
    waiting_since: float | None = None
    seen = 0
    limit = BATCH
    pause = TICK_SECONDS
    while True:
        await asyncio.sleep(pause)
        try:
            queued = await queued_count(deps.uow)
            if queued == 0:
                waiting_since, seen = None, 0
                continue
            now = time.monotonic()
            if waiting_since is None:
                waiting_since = now
            arriving = queued > seen
            if arriving and queued < BATCH and now - waiting_since < policy.search_within_seconds:
                seen = queued
                continue
            while await search_queued(deps.uow, policy, limit) == limit:
                pass
            waiting_since, seen = None, 0
            limit, pause = BATCH, TICK_SECONDS
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away, or a search keeps failing
            log.warning("duplicate search failed, retrying", extra={"error": type(exc).__name__})
            if limit == 1:
                with contextlib.suppress(Exception):
                    await give_up_oldest(deps.uow)
            limit, pause = max(1, limit // 2), min(pause * 2, MAX_PAUSE_SECONDS)


async def give_up_oldest(uow_factory: Callable[[], UnitOfWork]) -> str | None:
    """Drop the oldest queued search (one that failed alone); return its case id."""
    async with uow_factory() as uow:
        case_id = await uow.session.scalar(
            select(DuplicateSearchRow.case_id)
            .order_by(DuplicateSearchRow.queued_at, DuplicateSearchRow.case_id)
            .limit(1)
        )
        if case_id is None:
            return None
        await uow.session.execute(
            delete(DuplicateSearchRow).where(DuplicateSearchRow.case_id == case_id)
        )
    log.warning("duplicate search given up", extra={"case_id": case_id})
    return case_id
