"""Possible duplicates of a case among the open ones, for the console.

Near: the same category inside a bounding box on the indexed coordinates (``ix_cases_lat_lon``),
confirmed by the exact haversine distance. Similar text: the open cases filed within the
policy's days, nearest text first — in PostgreSQL with ``pg_trgm`` (when the extension is
installed) over a trigram index of the open cases, else on a bounded set of the most recent
ones here. Joined cases are not offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Float, func, select, text

from shared.config import DuplicatePolicy
from shared.db.models import CaseRow
from shared.domain.duplicates import (
    bounding_box,
    distance_reason,
    haversine_m,
    similarity,
    text_reason,
)
from shared.lifecycle import OPEN_STATES
from shared.uow import UnitOfWork

#: Without pg_trgm, at most this many recent open cases are compared in Python.
FALLBACK_SCAN = 500
_OPEN = [s.value for s in OPEN_STATES]
_OPEN_SQL = ", ".join(f"'{state}'" for state in sorted(_OPEN))


@dataclass(frozen=True)
class Candidate:
    case: CaseRow
    reason: str


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
    others = (
        CaseRow.state.in_(_OPEN),
        CaseRow.id != case.id,
        CaseRow.duplicate_of.is_(None),
    )
    found: dict[str, Candidate] = {}
    if case.lat is not None and case.lon is not None and case.category:
        min_lat, max_lat, min_lon, max_lon = bounding_box(case.lat, case.lon, policy.distance_m)
        near = await uow.session.scalars(
            select(CaseRow)
            .where(
                *others,
                CaseRow.category == case.category,
                CaseRow.lat.between(min_lat, max_lat),
                CaseRow.lon.between(min_lon, max_lon),
            )
            .limit(policy.limit * 4)
        )
        measured = sorted(
            ((haversine_m(case.lat, case.lon, o.lat or 0.0, o.lon or 0.0), o) for o in near),
            key=lambda pair: pair[0],
        )
        for metres, other in measured:
            if metres <= policy.distance_m:
                found.setdefault(other.id, Candidate(other, distance_reason(metres)))
    since = case.received_at - timedelta(days=policy.text_days)
    recent = (*others, CaseRow.received_at >= since)
    if await has_trigrams(uow):
        # The nearest texts first, straight from the open cases' trigram index
        # (``ix_cases_open_description_trgm``, migration 0009): ``%`` keeps only those at
        # the policy's similarity, ``<->`` orders by distance, so a filing reads a handful
        # of index pages however many cases are open. The index's predicate is spelled
        # out as constants so that the planner can match it.
        await uow.session.execute(
            select(
                func.set_config("pg_trgm.similarity_threshold", str(policy.text_similarity), True)
            )
        )
        score = func.similarity(CaseRow.description, case.description)
        rows = await uow.session.execute(
            select(CaseRow, score)
            .where(
                text(f"cases.state IN ({_OPEN_SQL}) AND cases.duplicate_of IS NULL"),
                CaseRow.id != case.id,
                CaseRow.received_at >= since,
                CaseRow.description.op("%")(case.description),
            )
            .order_by(CaseRow.description.op("<->", return_type=Float)(case.description))
            .limit(policy.limit)
        )
        scored = [(float(s), other) for other, s in rows.all()]
    else:
        window = await uow.session.scalars(
            select(CaseRow).where(*recent).order_by(CaseRow.received_at.desc()).limit(FALLBACK_SCAN)
        )
        scored = sorted(
            ((similarity(case.description, o.description), o) for o in window),
            key=lambda pair: -pair[0],
        )
    for value, other in scored:
        if value >= policy.text_similarity:
            found.setdefault(other.id, Candidate(other, text_reason(value)))
    return list(found.values())[: policy.limit]


async def joined_to(uow: UnitOfWork, case: CaseRow) -> list[CaseRow]:
    """The cases joined to ``case`` (it is their main case)."""
    return list(
        await uow.session.scalars(
            select(CaseRow).where(CaseRow.duplicate_of == case.id).order_by(CaseRow.received_at)
        )
    )
