"""Possible duplicates of a case among the open ones, for the console.

Near: the same category inside a bounding box on the indexed coordinates (``ix_cases_lat_lon``),
confirmed by the exact haversine distance. Similar text: the open cases filed within the
policy's days, nearest text first — in PostgreSQL with ``pg_trgm`` (when the extension is
installed) over a trigram index of the open cases, else on a bounded set of the most recent
ones here. Joined cases are not offered.

A filing runs the search once (:func:`record_candidates_of`, by the router for the cases it
classified) and stores what it found with the reason; the console's case page shows those and
any found when it is opened (:func:`duplicates_for`), and its inbox flags the cases not routed
yet that have some (:func:`flagged_as_duplicates`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from weakref import WeakKeyDictionary

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    DateTime,
    Float,
    String,
    Text,
    bindparam,
    func,
    insert,
    select,
    text,
    true,
)

from shared.config import DuplicatePolicy
from shared.db.models import CaseRow, DuplicateCandidateRow
from shared.domain.duplicates import (
    bounding_box,
    distance_reason,
    haversine_m,
    similarity,
    text_reason,
)
from shared.lifecycle import OPEN_STATES, State
from shared.uow import UnitOfWork

#: Without pg_trgm, at most this many recent open cases are compared in Python.
FALLBACK_SCAN = 500
_OPEN = [s.value for s in OPEN_STATES]
_OPEN_SQL = ", ".join(f"'{state}'" for state in sorted(_OPEN))


@dataclass(frozen=True)
class Candidate:
    case: CaseRow
    reason: str


#: The similarity threshold each open transaction has set (``set_config(…, true)`` lasts
#: as long as the transaction).
_THRESHOLDS: WeakKeyDictionary[UnitOfWork, float] = WeakKeyDictionary()

#: Databases known to have pg_trgm (an installed extension stays): asked once per process.
_WITH_TRIGRAMS: set[str] = set()


async def has_trigrams(uow: UnitOfWork) -> bool:
    if not uow.is_postgres:
        return False
    database = uow.session.get_bind().engine.url.render_as_string(hide_password=True)
    if database in _WITH_TRIGRAMS:
        return True
    found = await uow.session.scalar(text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'"))
    if found is not None:
        _WITH_TRIGRAMS.add(database)
    return found is not None


async def possible_duplicates(
    uow: UnitOfWork, case: CaseRow, policy: DuplicatePolicy
) -> list[Candidate]:
    """The open cases ``case`` may duplicate, nearest first, each with its reason."""
    found = await _search(uow, case, policy)
    if not found:
        return []
    rows = {
        row.id: row
        for row in await uow.session.scalars(select(CaseRow).where(CaseRow.id.in_(found)))
    }
    return [Candidate(rows[id_], reason) for id_, reason in found.items() if id_ in rows]


async def _search(uow: UnitOfWork, case: CaseRow, policy: DuplicatePolicy) -> dict[str, str]:
    return (await _search_many(uow, [case], policy))[case.id]


async def _search_many(
    uow: UnitOfWork, cases: list[CaseRow], policy: DuplicatePolicy
) -> dict[str, dict[str, str]]:
    """For each case, its candidates' ids in the order shown, with their reasons: near ones
    first (by distance), then similar texts (most similar first), at most ``policy.limit``.
    Only the columns the search measures are read, so the search loads no whole case."""
    found: dict[str, dict[str, str]] = {case.id: {} for case in cases}
    await uow.session.flush()  # the transaction's own changes are part of what is searched
    for case in cases:
        for id_, reason in await _near(uow, case, policy):
            found[case.id].setdefault(id_, reason)
    if await has_trigrams(uow):
        scored = await _similar_texts(uow, cases, policy)
    else:
        scored = {case.id: await _similar_texts_here(uow, case, policy) for case in cases}
    for case in cases:
        for value, id_ in scored.get(case.id, []):
            if value >= policy.text_similarity:
                found[case.id].setdefault(id_, text_reason(value))
    return {case_id: dict(list(by_id.items())[: policy.limit]) for case_id, by_id in found.items()}


def _open_others(case: CaseRow) -> tuple[ColumnElement[bool], ...]:
    return (
        CaseRow.state.in_(_OPEN),
        CaseRow.id != case.id,
        CaseRow.duplicate_of.is_(None),
    )


async def _near(uow: UnitOfWork, case: CaseRow, policy: DuplicatePolicy) -> list[tuple[str, str]]:
    """Open cases of the same category within the policy's distance, nearest first."""
    if case.lat is None or case.lon is None or not case.category:
        return []
    min_lat, max_lat, min_lon, max_lon = bounding_box(case.lat, case.lon, policy.distance_m)
    near = await uow.session.execute(
        select(CaseRow.id, CaseRow.lat, CaseRow.lon)
        .where(
            *_open_others(case),
            CaseRow.category == case.category,
            CaseRow.lat.between(min_lat, max_lat),
            CaseRow.lon.between(min_lon, max_lon),
        )
        .limit(policy.limit * 4)
    )
    measured = sorted(
        (haversine_m(case.lat, case.lon, lat or 0.0, lon or 0.0), id_)
        for id_, lat, lon in near.all()
    )
    return [
        (id_, distance_reason(metres)) for metres, id_ in measured if metres <= policy.distance_m
    ]


async def _similar_texts(
    uow: UnitOfWork, cases: list[CaseRow], policy: DuplicatePolicy
) -> dict[str, list[tuple[float, str]]]:
    """On PostgreSQL with pg_trgm: each case's similar texts, (similarity, id), most similar
    first."""
    if _THRESHOLDS.get(uow) != policy.text_similarity:  # set once per transaction
        await uow.session.execute(
            select(
                func.set_config("pg_trgm.similarity_threshold", str(policy.text_similarity), True)
            )
        )
        _THRESHOLDS[uow] = policy.text_similarity
    # For each case searched (the ``unnest`` of its id, text and window), the open, unjoined
    # cases filed in its window whose description is at the policy's similarity (``%``),
    # nearest first (``<->``) straight from the open cases' trigram index
    # (``ix_cases_open_description_trgm``, migration 0010): each reads a handful of index
    # pages however many cases are open. The index's predicate is spelled out as constants
    # so that the planner can match it.
    searched = select(
        func.unnest(bindparam("ids", type_=ARRAY(String))).label("case_id"),
        func.unnest(bindparam("texts", type_=ARRAY(Text))).label("description"),
        func.unnest(bindparam("since", type_=ARRAY(DateTime(timezone=True)))).label("since"),
    ).subquery("searched")
    distance = CaseRow.description.op("<->", return_type=Float)(searched.c.description)
    score = func.similarity(CaseRow.description, searched.c.description)
    found = (
        # ``similarity`` itself, not ``1 - distance``: the two differ by a float4 rounding
        # below 0.5, enough to drop a text exactly at the policy's similarity.
        select(CaseRow.id, distance.label("distance"), score.label("score"))
        .where(
            text(f"cases.state IN ({_OPEN_SQL}) AND cases.duplicate_of IS NULL"),
            CaseRow.id != searched.c.case_id,
            CaseRow.received_at >= searched.c.since,
            CaseRow.description.op("%")(searched.c.description),
        )
        .order_by(distance)
        .limit(policy.limit)
        .lateral("found")
    )
    rows = await uow.session.execute(
        select(searched.c.case_id, found.c.id, found.c.score)
        .select_from(searched.join(found, true()))
        .order_by(searched.c.case_id, found.c.distance),
        {
            "ids": [case.id for case in cases],
            "texts": [case.description for case in cases],
            "since": [case.received_at - timedelta(days=policy.text_days) for case in cases],
        },
    )
    scored: dict[str, list[tuple[float, str]]] = {}
    for case_id, id_, value in rows.all():
        scored.setdefault(case_id, []).append((float(value), id_))
    return scored


async def _similar_texts_here(
    uow: UnitOfWork, case: CaseRow, policy: DuplicatePolicy
) -> list[tuple[float, str]]:
    """Without pg_trgm: the same trigram measure here, over the most recent open cases."""
    since = case.received_at - timedelta(days=policy.text_days)
    window = await uow.session.execute(
        select(CaseRow.id, CaseRow.description)
        .where(*_open_others(case), CaseRow.received_at >= since)
        .order_by(CaseRow.received_at.desc())
        .limit(FALLBACK_SCAN)
    )
    return sorted(
        ((similarity(case.description, text_), id_) for id_, text_ in window.all()),
        key=lambda pair: -pair[0],
    )


async def joined_to(uow: UnitOfWork, case: CaseRow, *, lock: bool = False) -> list[CaseRow]:
    """The cases joined to ``case`` (it is their main case), oldest first; locked FOR UPDATE
    when asked (on PostgreSQL); a locking batch read them ahead for its cases."""
    if lock:
        cached = uow.cached_followers(case.id)
        if cached is not None:
            return list(cached)
    query = select(CaseRow).where(CaseRow.duplicate_of == case.id).order_by(CaseRow.received_at)
    if lock and uow.is_postgres:
        query = query.with_for_update()
    return list(await uow.session.scalars(query))


#: A case may still be joined to another while it is not routed: the console flags it then.
_JOINABLE = (State.RECEIVED.value, State.CLASSIFIED.value)


async def record_candidates(
    uow: UnitOfWork, case: CaseRow, policy: DuplicatePolicy, now: datetime
) -> int:
    """The duplicate search a filing runs (:func:`possible_duplicates`), at once: each
    candidate is stored with its reason, for the console's case page and inbox. Returns
    how many."""
    return await record_candidates_of(uow, {case.id: (case, now)}, policy)


async def record_candidates_of(
    uow: UnitOfWork, cases: Mapping[str, tuple[CaseRow, datetime]], policy: DuplicatePolicy
) -> int:
    """:func:`record_candidates` for many cases at once (case id → the case and when its
    search was asked for): one search statement for them all on PostgreSQL, one insert."""
    if not cases:
        return 0
    found = await _search_many(uow, [case for case, _ in cases.values()], policy)
    rows = [
        {
            "case_id": case_id,
            "candidate_id": id_,
            "reason": reason[:200],
            "found_at": cases[case_id][1],
        }
        for case_id, by_id in found.items()
        for id_, reason in by_id.items()
    ]
    if rows and uow.is_postgres:
        # Each row's foreign keys lock its two cases (FOR KEY SHARE) until the commit: taken
        # here at once in id order, the order a batch locks cases in (``UnitOfWork.prefetch``),
        # so this transaction and a router's batch cannot wait on each other.
        referenced = {row["case_id"] for row in rows} | {row["candidate_id"] for row in rows}
        await uow.session.execute(
            select(CaseRow.id)
            .where(CaseRow.id.in_(sorted(referenced)))
            .order_by(CaseRow.id)
            .with_for_update(read=True, key_share=True)
        )
    if rows:
        await uow.session.execute(insert(DuplicateCandidateRow), rows)
    return len(rows)


async def candidates_at_filing(uow: UnitOfWork, case: CaseRow) -> list[Candidate]:
    """The candidates stored when ``case`` was filed, as found then."""
    rows = await uow.session.execute(
        select(CaseRow, DuplicateCandidateRow.reason)
        .join(DuplicateCandidateRow, DuplicateCandidateRow.candidate_id == CaseRow.id)
        .where(DuplicateCandidateRow.case_id == case.id)
        .order_by(DuplicateCandidateRow.found_at, CaseRow.received_at)
    )
    return [Candidate(other, reason) for other, reason in rows.all()]


async def duplicates_for(
    uow: UnitOfWork, case: CaseRow, policy: DuplicatePolicy
) -> list[Candidate]:
    """What the console shows as "posibles duplicados" of an open, unjoined case: the
    candidates found at filing that are still open and unjoined, then any found now."""
    shown: dict[str, Candidate] = {}
    for found in await candidates_at_filing(uow, case):
        if found.case.state in _OPEN and found.case.duplicate_of is None:
            shown.setdefault(found.case.id, found)
    for found in await possible_duplicates(uow, case, policy):
        shown.setdefault(found.case.id, found)
    return list(shown.values())


async def flagged_as_duplicates(uow: UnitOfWork, cases: Iterable[CaseRow]) -> set[str]:
    """Of ``cases``, the ids of those not routed nor joined yet for which the filing found
    possible duplicates: the inbox flags them "posible duplicado" (one statement)."""
    ids = {c.id for c in cases if c.state in _JOINABLE and c.duplicate_of is None}
    if not ids:
        return set()
    found = await uow.session.scalars(
        select(DuplicateCandidateRow.case_id)
        .where(DuplicateCandidateRow.case_id.in_(sorted(ids)))
        .distinct()
    )
    return set(found)
