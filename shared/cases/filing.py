"""Filing a case: store it in ``received`` and emit ``CaseReceived``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select

from shared.cases.audit import audit
from shared.cases.form import without_lone_document_type
from shared.cases.services import CaseServices
from shared.contract import CaseReceived, Citizen, Submission
from shared.db.models import CaseRow
from shared.lifecycle import State
from shared.tracking import new_tracking_code
from shared.uow import UnitOfWork


async def file_case(
    uow: UnitOfWork,
    services: CaseServices,
    submission: Submission,
    *,
    channel: str,
    actor: str,
    now: datetime,
    external_ref: str | None = None,
    check_code: bool = True,
    clave_hash: str | None = None,
) -> tuple[CaseRow, bool]:
    """Store a new case in ``received`` and emit ``CaseReceived``.

    A 311 ``external_ref`` seen before returns the existing case and emits nothing
    (``created`` is False). ``check_code`` False skips the look-up that the new tracking
    code is free (40 random bits: a clash is all but impossible): for a caller that runs
    again on the unique index's refusal, as a consumer does. ``clave_hash``: the hash of the
    citizen's clave (:mod:`shared.domain.citizen_key`) when the door hands the clave over.
    """
    if external_ref is not None:
        cached, existing = uow.cached_external_ref(external_ref)
        if not cached:
            existing = await uow.session.scalar(
                select(CaseRow).where(CaseRow.external_ref == external_ref)
            )
        if existing is not None:
            return existing, False
    case = CaseRow(
        id=str(uuid.uuid4()),
        tracking_code=(
            await _unique_tracking_code(uow, now) if check_code else new_tracking_code(now.year)
        ),
        external_ref=external_ref,
        channel=channel,
        kind=submission.kind,
        category=submission.category,
        description=submission.description,
        citizen=_stored_citizen(submission.citizen),
        notify=submission.notify.model_dump(exclude_none=True) if submission.notify else None,
        location=submission.location.model_dump(exclude_none=True) if submission.location else None,
        anonymous=submission.anonymous,
        lat=submission.location.lat if submission.location else None,
        lon=submission.location.lon if submission.location else None,
        clave_hash=clave_hash,
        reopen_count=0,
        state=State.RECEIVED.value,
        received_at=now,
        due_at=services.terms.legal_due(now),
        return_count=0,
        flagged=False,
        updated_at=now,
    )
    uow.session.add(case)
    if external_ref is not None:
        uow.remember_external_ref(external_ref, case)
    audit(
        uow,
        case,
        actor=actor,
        action="file",
        from_state=None,
        to_state=State.RECEIVED,
        now=now,
        details={"channel": channel},
    )
    uow.publish(
        CaseReceived(
            case_id=uuid.UUID(case.id),
            tracking_code=case.tracking_code,
            external_ref=external_ref,
            channel=channel,
            kind=case.kind,
            category=case.category,
            received_at=now,
            due_at=case.due_at,
            occurred_at=now,
        )
    )
    return case, True


async def _unique_tracking_code(uow: UnitOfWork, now: datetime) -> str:
    for _ in range(10):
        code = new_tracking_code(now.year)
        taken = await uow.session.scalar(select(CaseRow.id).where(CaseRow.tracking_code == code))
        if taken is None:
            return code
    raise RuntimeError("could not draw a free tracking code")  # ~never: 40 random bits


def _stored_citizen(citizen: Citizen | None) -> dict[str, Any] | None:
    """The citizen as the case keeps it (the model's default ``cedula`` alone says nothing)."""
    if citizen is None:
        return None
    return without_lone_document_type(citizen.model_dump(exclude_none=True))
