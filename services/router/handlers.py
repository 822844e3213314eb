"""The router's handlers: classify and route new cases; take departments' answers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from services.router.duplicate_searches import queue_search
from services.router.rules import Classification, RuleSet
from shared.cases import (
    CaseNotFound,
    CaseServices,
    InvalidActionInput,
    NotYourCase,
    get_case,
    perform,
    record_note,
)
from shared.cases.duplicates import record_candidates
from shared.clock import Clock
from shared.config import DuplicatePolicy
from shared.consumer import EventHandler, Handlers, Poison, Prefetch
from shared.contract import (
    CaseReceived,
    CaseReturned,
    CaseSeparated,
    DepartmentResponded,
    FieldError,
    SubmissionRejected,
)
from shared.db.models import CaseRow
from shared.domain.actions import RoutedClassification, actions_of
from shared.lifecycle import DomainError, IllegalTransition
from shared.runtime import Deps
from shared.uow import UnitOfWork

CONSUMER = "router"
log = logging.getLogger("defensa311.router")

ROUTE_ACTIONS = {"inspect": "start_inspection", "agenda": "add_to_agenda", "remit": "remit"}


@dataclass(frozen=True)
class RouterDeps:
    """What the router's handlers need."""

    clock: Clock
    cases: CaseServices
    rules: RuleSet
    duplicates: DuplicatePolicy = field(default_factory=DuplicatePolicy)


async def case_received(event: CaseReceived, uow: UnitOfWork, deps: RouterDeps) -> None:
    """Classify a new case by the rules and follow its route."""
    try:
        case = await get_case(uow, case_id=str(event.case_id), lock=True)
    except CaseNotFound as exc:
        raise Poison("caso desconocido") from exc
    if case.state != "received":
        return  # staff got there first
    if case.duplicate_of is not None:
        return  # joined to a main case before it was routed: it follows the main case
    await classify_and_route(uow, deps, case, search_duplicates=True)


async def case_separated(event: CaseSeparated, uow: UnitOfWork, deps: RouterDeps) -> None:
    """A case separated from its main case starts over: classified and routed by the rules."""
    try:
        case = await get_case(uow, case_id=str(event.case_id), lock=True)
    except CaseNotFound as exc:
        raise Poison("caso desconocido") from exc
    if case.state != "received" or case.duplicate_of is not None:
        return  # staff got there first
    await classify_and_route(uow, deps, case, search_duplicates=False)


async def classify_and_route(
    uow: UnitOfWork, deps: RouterDeps, case: CaseRow, *, search_duplicates: bool
) -> None:
    result = deps.rules.classify(
        kind=case.kind, category=case.category, description=case.description
    )
    await route_case(uow, deps, case, result, search_duplicates=search_duplicates)
    facts = {
        "case_id": case.id,
        "tracking_code": case.tracking_code,
        "route": result.route,
        "rule": result.rule,
        "state": case.state,
    }
    uow.after_commit(lambda: log.info("case routed", extra=facts))


async def department_responded(
    event: DepartmentResponded, uow: UnitOfWork, deps: RouterDeps
) -> None:
    """``case.responded.<code>``: a department's answer over AMQP."""
    await apply_answer(uow, deps, event, "respond")


async def case_returned(event: CaseReturned, uow: UnitOfWork, deps: RouterDeps) -> None:
    """``case.returned.<code>``: a department gives a case back over AMQP."""
    await apply_answer(uow, deps, event, "return")


HANDLERS: dict[type[Any], EventHandler] = {
    CaseReceived: case_received,
    DepartmentResponded: department_responded,
    CaseReturned: case_returned,
    CaseSeparated: case_separated,
}


def handlers(deps: Deps) -> Handlers[RouterDeps]:
    rules = RuleSet.from_config(deps.config.rules, set(deps.config.department_codes))
    return Handlers(
        CONSUMER,
        RouterDeps(
            clock=deps.clock, cases=deps.cases, rules=rules, duplicates=deps.config.duplicates
        ),
        HANDLERS,
        prefetch=Prefetch.CASE_LOCKED,
    )


async def route_case(
    uow: UnitOfWork,
    deps: RouterDeps,
    case: CaseRow,
    result: Classification,
    *,
    search_duplicates: bool = False,
) -> None:
    """Classify, then follow the route in the same transaction; what cannot go waits in triage.

    ``search_duplicates`` (a new case): once classified (its category known), the open cases
    it may duplicate are looked for and stored, off the path to the department
    (:mod:`services.router.duplicate_searches`); with ``[duplicates] hold_routing``, at once,
    and a case that has some waits in triage for staff to join it or route it.
    """
    now = deps.clock.now()
    route, _, department = result.route.partition(":")
    kind: str | None = result.kind
    if case.anonymous and kind in ("denuncia", "queja"):
        kind, route = case.kind, "triage"
    classification = RoutedClassification.model_construct(
        kind=kind,
        category=result.category,
        rule=result.rule,
        route=result.route,
        note=result.note,
        by="router",
    )
    await perform(uow, deps.cases, case, "classify", classification, actor="router", now=now)
    action = ROUTE_ACTIONS.get(route)
    held_if_found = deps.duplicates.hold_routing and action is not None
    if search_duplicates and not held_if_found:
        queue_search(uow, case, now)  # nothing waits on the answer
    elif search_duplicates:
        found = await record_candidates(uow, case, deps.duplicates, now)
        if found:
            record_note(
                uow,
                case,
                actor="router",
                action="route_held",
                now=now,
                details={"route": result.route, "candidates": found},
            )
            return
    if action is None or case.kind is None:
        return
    params = {"department": department} if action == "remit" else {}
    try:
        await perform(uow, deps.cases, case, action, params, actor="router", now=now)
    except DomainError as exc:
        record_note(
            uow,
            case,
            actor="router",
            action="route_refused",
            now=now,
            details={"route": result.route, "reason": str(exc)},
        )


async def apply_answer(
    uow: UnitOfWork, deps: RouterDeps, event: DepartmentResponded | CaseReturned, action: str
) -> None:
    """Apply a department's answer once; a foreign or late one changes nothing and is refused.

    The refusal is recorded on the case (an ``answer_refused`` audit row) and sent back to the
    department as ``SubmissionRejected`` on ``case.rejected.<code>`` (its own queue).
    """
    now = deps.clock.now()
    actor = f"department:{event.department}"
    try:
        case = await get_case(uow, case_id=str(event.case_id), lock=True)
    except CaseNotFound as exc:
        raise Poison("caso desconocido") from exc
    if case.tracking_code != event.tracking_code:
        raise Poison("tracking_code no corresponde al case_id")
    params: dict[str, Any] = (
        {"response": event.response}
        if isinstance(event, DepartmentResponded)
        else {"reason": event.reason}
    )
    refusal: FieldError | None = None
    try:
        await perform(
            uow,
            deps.cases,
            case,
            action,
            params,
            actor=actor,
            now=now,
            department=event.department,
            answer_on_wire=True,
            answers_heard_by=CONSUMER,  # a flagged return we announce comes back to us
        )
    except NotYourCase as exc:
        refusal = FieldError(
            field="department", rule="not_remitted_to_department", message=str(exc)
        )
    except IllegalTransition as exc:
        mine = exc.only(actions_of(actor))  # name only what the department itself may do
        refusal = FieldError(field="state", rule="illegal_transition", message=str(mine))
    except InvalidActionInput as exc:
        refusal = FieldError(field=exc.field, rule=exc.rule, message=exc.message)
    if refusal is not None:
        record_note(
            uow,
            case,
            actor=actor,
            action="answer_refused",
            now=now,
            details={
                "event_id": str(event.event_id),
                "event_type": event.event_type,
                "rule": refusal.rule,
                "reason": refusal.message,
            },
        )
        uow.publish(
            SubmissionRejected(
                refused_event_id=str(event.event_id),
                department=event.department,
                case_id=event.case_id,
                tracking_code=event.tracking_code,
                reasons=[refusal],
                occurred_at=now,
            )
        )
    facts = {
        "case_id": str(event.case_id),
        "tracking_code": event.tracking_code,
        "department": event.department,
        "action": action,
        "rule": refusal.rule if refusal else None,
    }
    message = "department answer refused" if refusal else "department answer applied"
    uow.after_commit(lambda: log.info(message, extra=facts))
