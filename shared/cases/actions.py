"""Applying a lifecycle action to a stored case: the domain decides, this module stores.

:func:`perform` validates the body against the action's model (the registry's), asks the
:class:`~shared.domain.case.Case` verb, and writes what it returns — the new state, the
audit row and the events — into the caller's unit of work. A refusal changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from shared.cases.audit import audit
from shared.cases.joined import count_followers, follow_main, main_of
from shared.cases.services import CaseServices
from shared.contract import CaseReturned, DepartmentResponded, Event
from shared.db.models import CaseRow
from shared.domain.actions import REGISTRY, Acting, ActionSpec, check_follows
from shared.domain.case import InvalidActionInput
from shared.lifecycle import UnknownAction
from shared.uow import UnitOfWork
from shared.validation import spanish_errors

#: A department's own facts: what it says on the wire itself when it answers over AMQP.
DEPARTMENT_FACTS = (DepartmentResponded, CaseReturned)


def checked_body(spec: ActionSpec, body: BaseModel | Mapping[str, Any]) -> BaseModel:
    """The action's body as its model; a raw mapping is validated (the first error raised)."""
    if isinstance(body, BaseModel):
        return body
    try:
        return spec.body.model_validate(dict(body))
    except ValidationError as exc:
        first = spanish_errors(exc)[0]
        raise InvalidActionInput(first["field"], first["rule"], first["message"]) from None


async def perform(
    uow: UnitOfWork,
    services: CaseServices,
    case: CaseRow,
    action: str,
    body: BaseModel | Mapping[str, Any],
    *,
    actor: str,
    now: datetime,
    department: str | None = None,
    answer_on_wire: bool = False,
    answers_heard_by: str | None = None,
) -> list[Event]:
    """Apply one lifecycle action to a (locked) case row; return the events emitted.

    Refusals change nothing: :class:`~shared.lifecycle.IllegalTransition` (the state or the
    kind does not allow it), :class:`~shared.domain.case.InvalidActionInput` (the body breaks
    a rule, named in Spanish) and :class:`~shared.domain.case.NotYourCase` (``department``,
    the department acting, is not the case's).

    ``answer_on_wire``: the department's own ``DepartmentResponded`` / ``CaseReturned`` is
    already on the wire (it arrived over AMQP), so it is not emitted again: the verdict
    (``CaseResolved``, ``CaseReturnAccepted``, which says whether the case is now flagged)
    is. ``answers_heard_by``: the
    consumer that hears departments' answers over AMQP; when this door emits an answer
    itself, that consumer's inbox is marked in the same transaction so it does not apply the
    same fact a second time.

    A case joined to a main one takes only the actions its spec marks ``while_joined``
    (:func:`~shared.domain.actions.check_follows`); the cases joined to this one follow the
    step in the same transaction (:func:`~shared.cases.joined.follow_main`).
    """
    spec = REGISTRY.get(action)
    if spec is None:
        raise UnknownAction(action)
    checked = checked_body(spec, body)
    # A joined case follows its main case: only a few actions are its own.
    related = await main_of(uow, case)
    check_follows(spec, case, related)
    followers = 0
    if spec.related_field is not None:
        code = getattr(checked, spec.related_field)
        related = await uow.session.scalar(
            select(CaseRow).where(CaseRow.tracking_code == code).with_for_update()
        )
        followers = await count_followers(uow, case)
    from_state, main_before = case.state, case.duplicate_of
    events = spec.take(
        services.case(case), checked, Acting(now, department, related, followers=followers)
    )
    if case.duplicate_of != main_before:
        uow.forget_followers()
    if answer_on_wire:
        events = [e for e in events if not isinstance(e, DEPARTMENT_FACTS)]
    if services.complete_event is not None:
        events = [await services.complete_event(uow, e, now) for e in events]
    for event in events:
        uow.publish(event)
        if answers_heard_by is not None and isinstance(event, DEPARTMENT_FACTS):
            uow.mark_seen(answers_heard_by, str(event.event_id), now)
    audit(
        uow,
        case,
        actor=actor,
        action=action,
        from_state=from_state,
        to_state=case.state,
        now=now,
        details=_public_details(checked, department, events, case, action),
    )
    if spec.followed and case.duplicate_of is None:
        await follow_main(uow, case, action, events, case_of=services.case, now=now)
    return events


def _public_details(
    body: BaseModel,
    department: str | None,
    events: list[Event],
    case: CaseRow,
    action: str,
) -> dict[str, Any]:
    """What the audit row keeps of the action: its plain values and the events' ids."""
    keep: dict[str, Any] = {
        key: value
        for key, value in body.model_dump(mode="json", exclude_none=True).items()
        if isinstance(value, str | int | bool)
    }
    if department is not None:
        keep["department"] = department
    if action == "return":
        keep["return_count"] = case.return_count
        keep["flagged"] = case.flagged
    keep["events"] = [str(e.event_id) for e in events]
    return keep
