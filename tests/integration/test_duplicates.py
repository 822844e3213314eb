"""Possible duplicates (issue 20, point 3) in the database: open cases of the same category
within the distance (bounding box on the indexed coordinates, then haversine) or with very
similar text within the days; joining a case to its main one through the registry's action.
On SQLite (the fallback similarity) and PostgreSQL (pg_trgm)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.notifier.handlers import handlers
from services.notifier.models import NotificationRow
from services.notifier.settings import NotifierSettings
from services.router import duplicate_searches
from services.router.duplicate_searches import (
    queue_search,
    queued_count,
    search_loop,
    search_queued,
)
from shared.cases import InvalidActionInput, get_case, perform
from shared.cases.duplicates import (
    candidates_at_filing,
    has_trigrams,
    joined_to,
    possible_duplicates,
    record_candidates_of,
)
from shared.config import DuplicatePolicy
from shared.contract import CaseResolved
from shared.db.models import CaseRow, DuplicateCandidateRow
from shared.runtime import Deps
from shared.tracking import new_tracking_code
from tests.factories import NOW, case_in
from tests.integration.test_satisfaction_figures import deps_for

HOLE = "Hay un hueco enorme en la Calle 50 frente a la escuela primaria"


@pytest.fixture
async def sqlite_deps(tmp_path: Path) -> AsyncIterator[Deps]:
    async for deps in deps_for(f"sqlite:///{tmp_path}/dup.db"):
        yield deps


def at(lat: float, lon: float, **overrides: object) -> CaseRow:
    values: dict[str, object] = {"category": "Calles y huecos", **overrides}
    row = case_in(str(values.pop("state", "classified")), **values)  # type: ignore[arg-type]
    row.lat, row.lon = lat, lon
    row.location = {"lat": lat, "lon": lon}
    return row


async def store(deps: Deps, *rows: CaseRow) -> None:
    async with deps.uow() as uow:
        for row in rows:
            row.tracking_code = new_tracking_code(2026)
            uow.session.add(row)


async def check(deps: Deps) -> None:
    new = at(8.98, -79.52, description="Un bache peligroso cerca del semáforo", received_at=NOW)
    near = at(8.9803, -79.52, description="Otro texto sin relación con nada de aquí")
    far = at(8.99, -79.52, description="Otro texto sin relación con nada de allá")
    other_category = at(8.98, -79.52, category="Basura", description="Bolsas de basura tiradas")
    closed = at(8.98, -79.52, state="closed", description="Ya se reparó hace tiempo, gracias")
    similar = case_in("received", description=HOLE + ".", received_at=NOW - timedelta(days=3))
    old_similar = case_in("received", description=HOLE, received_at=NOW - timedelta(days=40))
    wordy = case_in("received", description=HOLE, received_at=NOW - timedelta(days=1))
    await store(deps, new, near, far, other_category, closed, similar, old_similar)
    async with deps.uow() as uow:
        found = await possible_duplicates(uow, new, DuplicatePolicy())
    assert [(c.case.id, c.reason) for c in found] == [(near.id, "misma categoría, a 33 m")]

    await store(deps, wordy)
    async with deps.uow() as uow:
        found = await possible_duplicates(uow, wordy, DuplicatePolicy())
    assert [c.case.id for c in found] == [similar.id]  # not the one filed 40 days before
    assert found[0].reason.startswith("texto muy parecido (")

    # The router's filing step: both searched at once, stored as found.
    async with deps.uow() as uow:
        await record_candidates_of(
            uow, {row.id: (row, NOW) for row in (new, wordy)}, DuplicatePolicy()
        )
    async with deps.uow() as uow:
        for row in (new, wordy):
            stored = [(c.case.id, c.reason) for c in await candidates_at_filing(uow, row)]
            found = await possible_duplicates(uow, row, DuplicatePolicy())
            assert stored == [(c.case.id, c.reason) for c in found] != []

    # Staff join the new case to its near twin, through the registry's action.
    async with deps.uow() as uow:
        row = await get_case(uow, tracking_code=new.tracking_code, lock=True)
        with pytest.raises(InvalidActionInput, match="no hay ningún caso"):
            await perform(
                uow, deps.cases, row, "join", {"main": "2026-4SB-N2C-ZTS"}, actor="staff", now=NOW
            )
    async with deps.uow() as uow:
        row = await get_case(uow, tracking_code=new.tracking_code, lock=True)
        await perform(
            uow, deps.cases, row, "join", {"main": near.tracking_code}, actor="staff", now=NOW
        )
    async with deps.uow() as uow:
        main = await get_case(uow, tracking_code=near.tracking_code)
        assert [c.id for c in await joined_to(uow, main)] == [new.id]
        # A joined case is not offered as anyone's duplicate any more.
        assert new.id not in [
            c.case.id for c in await possible_duplicates(uow, main, DuplicatePolicy())
        ]


async def test_duplicates_are_found_and_joined_on_sqlite(sqlite_deps: Deps) -> None:
    await check(sqlite_deps)


@pytest.mark.connected
async def test_duplicates_are_found_and_joined_on_postgresql(pg_url: str) -> None:
    async for deps in deps_for(pg_url):
        async with deps.uow() as uow:
            assert await has_trigrams(uow)  # the migration installed pg_trgm
        await check(deps)


@pytest.mark.connected
async def test_a_text_exactly_at_the_policys_similarity_is_a_candidate(pg_url: str) -> None:
    """pg_trgm's ``similarity`` of these two is exactly 0.4; ``1 - (a <-> b)`` is a float4
    rounding below it."""
    policy = DuplicatePolicy(text_similarity=0.4)
    async for deps in deps_for(pg_url):
        first = case_in("received", description="hueco escuela", received_at=NOW)
        second = case_in("received", description="calle escuela", received_at=NOW)
        await store(deps, first, second)
        async with deps.uow() as uow:
            found = await possible_duplicates(uow, second, policy)
            await record_candidates_of(uow, {second.id: (second, NOW)}, policy)
        assert [(c.case.id, c.reason) for c in found] == [
            (first.id, "texto muy parecido (40 % de coincidencia)")
        ]
        async with deps.uow() as uow:
            assert [c.case.id for c in await candidates_at_filing(uow, second)] == [first.id]


async def test_the_outcome_of_a_main_case_reaches_the_citizens_of_its_joined_cases(
    sqlite_deps: Deps,
) -> None:
    deps = sqlite_deps
    main = case_in("resolved", notify={"email": "ana@example.com"}, resolution="Se rellenó.")
    joined = case_in("received", notify={"email": "luis@example.com"})
    same_person = case_in("received", notify={"email": "ana@example.com"})
    for row in (main, joined, same_person):
        row.tracking_code = new_tracking_code(2026)
    joined.duplicate_of = same_person.duplicate_of = main.id
    async with deps.uow() as uow:
        uow.session.add_all([main, joined, same_person])
    resolved = CaseResolved(
        case_id=uuid.UUID(main.id),
        tracking_code=main.tracking_code,
        path="inspection",
        resolution="Se rellenó el hueco.",
        resolved_at=NOW,
        occurred_at=NOW,
    )
    # Each joined case follows the step (as perform does), naming the main case's event.
    followed = [
        event
        for row in (joined, same_person)
        for event in deps.cases.case(row).follow(
            main, "record_findings", NOW, step_event_id=resolved.event_id
        )
    ]
    notifier = handlers(deps, NotifierSettings(), asyncio.Event())
    for event in (resolved, *followed):
        async with deps.uow() as uow:
            assert await notifier.handle(event, uow)
    async with deps.uow() as uow:
        told = {
            (n.recipient, n.tracking_code, n.template)
            for n in await uow.session.scalars(select(NotificationRow))
        }
    assert told == {
        ("ana@example.com", main.tracking_code, "case_resolved"),
        # under their own code; whoever filed the main case too is not told twice
        ("luis@example.com", joined.tracking_code, "case_followed"),
    }


async def check_queue(deps: Deps, *, concurrent: bool) -> None:
    """The router's queue of searches: stored as asked, run off the path, taken once."""
    first = case_in("received", description=HOLE, received_at=NOW - timedelta(days=1))
    second = case_in("received", description=HOLE + ".", received_at=NOW)
    third = case_in("received", description=HOLE + "!", received_at=NOW)
    await store(deps, first, second, third)
    async with deps.uow() as uow:
        queue_search(uow, second, NOW)
        queue_search(uow, third, NOW + timedelta(seconds=1))
        queue_search(uow, third, NOW + timedelta(seconds=2))  # once each
    assert await queued_count(deps.uow) == 2
    async with deps.uow() as uow:
        assert await candidates_at_filing(uow, second) == []  # nothing searched yet
    if concurrent:  # two routers at once: each takes a row the other did not
        taken = await asyncio.gather(
            search_queued(deps.uow, DuplicatePolicy(), limit=1),
            search_queued(deps.uow, DuplicatePolicy(), limit=1),
        )
        assert sorted(taken) == [1, 1]
    else:
        assert await search_queued(deps.uow, DuplicatePolicy()) == 2
    assert await queued_count(deps.uow) == 0
    assert await search_queued(deps.uow, DuplicatePolicy()) == 0
    async with deps.uow() as uow:
        found = await candidates_at_filing(uow, second)
        assert [c.case.id for c in found] == [first.id, third.id]
        stored = await uow.session.scalars(
            select(DuplicateCandidateRow.found_at).where(DuplicateCandidateRow.case_id == third.id)
        )
        assert {at.replace(tzinfo=NOW.tzinfo) for at in stored} == {NOW + timedelta(seconds=1)}


async def test_the_routers_queued_searches_run_later_once_each_on_sqlite(
    sqlite_deps: Deps,
) -> None:
    await check_queue(sqlite_deps, concurrent=False)


@pytest.mark.connected
async def test_the_routers_queued_searches_run_later_once_each_on_postgresql(
    pg_url: str,
) -> None:
    async for deps in deps_for(pg_url):
        await check_queue(deps, concurrent=True)


async def test_the_routers_loop_searches_once_cases_stop_arriving(
    sqlite_deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duplicate_searches, "TICK_SECONDS", 0.05)
    first = case_in("received", description=HOLE, received_at=NOW)
    second = case_in("received", description=HOLE + ".", received_at=NOW)
    await store(sqlite_deps, first, second)
    async with sqlite_deps.uow() as uow:
        queue_search(uow, second, NOW)
    loop = asyncio.create_task(search_loop(sqlite_deps))
    try:
        async with asyncio.timeout(10):
            while await queued_count(sqlite_deps.uow):
                await asyncio.sleep(0.05)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    async with sqlite_deps.uow() as uow:
        assert [c.case.id for c in await candidates_at_filing(uow, second)] == [first.id]


async def test_a_search_that_keeps_failing_is_given_up_and_holds_back_no_other(
    sqlite_deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duplicate_searches, "TICK_SECONDS", 0.01)
    monkeypatch.setattr(duplicate_searches, "MAX_PAUSE_SECONDS", 0.02)
    first = case_in("received", description=HOLE, received_at=NOW - timedelta(days=1))
    broken = case_in("received", description=HOLE + "?", received_at=NOW)
    second = case_in("received", description=HOLE + ".", received_at=NOW)
    await store(sqlite_deps, first, broken, second)
    async with sqlite_deps.uow() as uow:
        queue_search(uow, broken, NOW)  # the oldest: first in every batch
        queue_search(uow, second, NOW + timedelta(seconds=1))
    record = duplicate_searches.record_candidates_of

    async def failing_for_broken(uow: Any, cases: Any, policy: DuplicatePolicy) -> int:
        if broken.id in cases:
            raise RuntimeError("this case's search always fails")
        return await record(uow, cases, policy)

    monkeypatch.setattr(duplicate_searches, "record_candidates_of", failing_for_broken)
    loop = asyncio.create_task(search_loop(sqlite_deps))
    try:
        async with asyncio.timeout(20):
            while await queued_count(sqlite_deps.uow):
                await asyncio.sleep(0.02)
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    async with sqlite_deps.uow() as uow:
        assert [c.case.id for c in await candidates_at_filing(uow, second)] != []
        assert await candidates_at_filing(uow, broken) == []
