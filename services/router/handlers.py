"""The router's handlers: classify and route new cases; take departments' answers."""

from __future__ import annotations

import json
import logging
from typing import Any

from faststream.rabbit.message import RabbitMessage
from pydantic import BaseModel, ValidationError

from services.router.rules import Classification, RuleSet
from shared.cases import (
    CaseNotFound,
    InvalidActionInput,
    NotYourCase,
    get_case,
    perform,
    record_note,
)
from shared.consumer import Handler, Poison, Work
from shared.contract import (
    CaseReceived,
    CaseReturned,
    DepartmentResponded,
    FieldError,
    SubmissionRejected,
)
from shared.db.models import CaseRow
from shared.domain.actions import RoutedClassification, actions_of
from shared.lifecycle import DomainError, IllegalTransition
from shared.runtime import Deps
from shared.uow import UnitOfWork
from shared.validation import spanish_errors

CONSUMER = "router"
log = logging.getLogger("defensa311.router")

ROUTE_ACTIONS = {"inspect": "start_inspection", "agenda": "add_to_agenda", "remit": "remit"}


def parse(model: type[BaseModel], body: bytes) -> Any:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise Poison("el cuerpo no es JSON válido") from exc
        fields = ", ".join(f"{e['field'] or '·'}:{e['rule']}" for e in spanish_errors(exc))
        raise Poison(f"no cumple el esquema {model.__name__}: {fields}") from exc


def case_received(deps: Deps) -> Handler:
    rules = RuleSet.from_config(deps.config.rules, set(deps.config.department_codes))

    def decode(body: bytes, msg: RabbitMessage) -> Work:
        event: CaseReceived = parse(CaseReceived, body)

        async def work(uow: UnitOfWork) -> None:
            try:
                case = await get_case(uow, case_id=str(event.case_id), lock=True)
            except CaseNotFound as exc:
                raise Poison("caso desconocido") from exc
            if case.state != "received":
                return  # staff got there first
            result = rules.classify(
                kind=case.kind, category=case.category, description=case.description
            )
            await route_case(uow, deps, case, result)
            facts = {
                "case_id": case.id,
                "tracking_code": case.tracking_code,
                "route": result.route,
                "rule": result.rule,
                "state": case.state,
            }
            uow.after_commit(lambda: log.info("case routed", extra=facts))

        claim = (CONSUMER, str(event.event_id))
        return Work(work, claim=claim, case_id=str(event.case_id), lock=True)

    return decode


async def route_case(uow: UnitOfWork, deps: Deps, case: CaseRow, result: Classification) -> None:
    """Classify, then follow the route in the same transaction; what cannot go waits in triage."""
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


def department_answer(deps: Deps) -> Handler:
    """``case.responded.<code>`` and ``case.returned.<code>`` from a department over AMQP."""

    def decode(body: bytes, msg: RabbitMessage) -> Work:
        try:
            event_type = json.loads(body).get("event_type")
        except (ValueError, AttributeError) as exc:
            raise Poison("el cuerpo no es un objeto JSON") from exc
        model: type[DepartmentResponded | CaseReturned]
        if event_type == "DepartmentResponded":
            model, action = DepartmentResponded, "respond"
        elif event_type == "CaseReturned":
            model, action = CaseReturned, "return"
        else:
            raise Poison(f"event_type inesperado: {event_type!r}")
        event = parse(model, body)
        key = msg.raw_message.routing_key or ""
        if key.rsplit(".", 1)[-1] != event.department:
            raise Poison("el departamento del mensaje no coincide con su clave de enrutamiento")

        async def work(uow: UnitOfWork) -> None:
            await apply_answer(uow, deps, event, action)

        claim = (CONSUMER, str(event.event_id))
        return Work(work, claim=claim, case_id=str(event.case_id), lock=True)

    return decode


async def apply_answer(
    uow: UnitOfWork, deps: Deps, event: DepartmentResponded | CaseReturned, action: str
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
