"""Intake's message handlers: 311 submissions arriving on ``case.submitted``.

A submission is answered either way: a valid one is filed (once per event and once per
``external_ref``), an invalid one is refused with ``SubmissionRejected`` naming each field and
rule. :func:`decode` tells the two apart before the handlers run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from faststream.rabbit.message import RabbitMessage
from pydantic import BaseModel

from shared.cases import CaseServices, file_case
from shared.clock import Clock
from shared.consumer import EventHandler, Handlers, Poison, Prefetch
from shared.contract import (
    CaseSubmitted,
    FieldError,
    Submission,
    SubmissionInvalid,
    SubmissionRejected,
    validate_submission,
)
from shared.runtime import Deps
from shared.uow import UnitOfWork

CONSUMER = "intake"
log = logging.getLogger("defensa311.intake")


@dataclass(frozen=True)
class IntakeDeps:
    """What intake's handlers need."""

    clock: Clock
    cases: CaseServices


@dataclass(frozen=True)
class ValidSubmission:
    """A 311 submission that meets the contract."""

    event_id: str
    event: CaseSubmitted

    @property
    def external_ref(self) -> str:
        return self.event.external_ref


@dataclass(frozen=True)
class InvalidSubmission:
    """A 311 submission that does not: the fields and rules it breaks."""

    event_id: str
    data: dict[str, Any]
    errors: list[FieldError]


def decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Poison(f"el cuerpo no es JSON válido: {type(exc).__name__}") from exc


def decode(
    body: bytes, msg: RabbitMessage, _model: type[BaseModel]
) -> ValidSubmission | InvalidSubmission:
    """A submission to file or to refuse (only a body that is no JSON object is poison)."""
    data = decode_json(body)
    if not isinstance(data, dict):
        raise Poison("el cuerpo debe ser un objeto JSON")
    event_id = _event_id(data, msg, body)
    try:
        event = validate_submission(data, CaseSubmitted)
    except SubmissionInvalid as exc:
        return InvalidSubmission(event_id, data, exc.errors)
    assert isinstance(event, CaseSubmitted)
    return ValidSubmission(event_id, event)


async def file_submission(arrived: ValidSubmission, uow: UnitOfWork, deps: IntakeDeps) -> None:
    """File the submission once per event and once per ``external_ref``.

    Another instance may file the same 311 ticket between our look-up and our insert: the
    unique index refuses ours, the transaction rolls back and the consumer runs this again,
    when the look-up finds that case and files nothing."""
    event = arrived.event
    submission = Submission.model_validate(event.model_dump(include=set(Submission.model_fields)))
    now = deps.clock.now()
    case, created = await file_case(
        uow,
        deps.cases,
        submission,
        channel="311",
        actor="platform311",
        now=now,
        external_ref=event.external_ref,
        check_code=False,  # a clash fails the transaction and the consumer runs it again
    )
    facts = {"case_id": case.id, "tracking_code": case.tracking_code, "event_id": arrived.event_id}
    message = "case filed" if created else "duplicate 311 submission ignored"
    uow.after_commit(lambda: log.info(message, extra=facts))


async def refuse_submission(refused: InvalidSubmission, uow: UnitOfWork, deps: IntakeDeps) -> None:
    """Answer ``SubmissionRejected`` with every field and rule the submission breaks."""
    external_ref = refused.data.get("external_ref")
    now = deps.clock.now()
    uow.publish(
        SubmissionRejected(
            external_ref=external_ref if isinstance(external_ref, str) else None,
            refused_event_id=refused.event_id,
            reasons=refused.errors,
            occurred_at=now,
        )
    )
    reason = ",".join(f"{e.field}:{e.rule}" for e in refused.errors)
    event_id = refused.event_id
    uow.after_commit(
        lambda: log.info("submission rejected", extra={"event_id": event_id, "reason": reason})
    )


HANDLERS: dict[type[Any], EventHandler] = {
    ValidSubmission: file_submission,
    InvalidSubmission: refuse_submission,
}


def handlers(deps: Deps) -> Handlers[IntakeDeps]:
    return Handlers(
        CONSUMER,
        IntakeDeps(deps.clock, deps.cases),
        HANDLERS,
        prefetch=Prefetch.EXTERNAL_REF,
        decode=decode,
    )


def _event_id(data: dict[str, Any], msg: RabbitMessage, body: bytes) -> str:
    raw = data.get("event_id") or msg.message_id
    try:
        return str(UUID(str(raw)))
    except ValueError:
        # Without a usable id the body's hash stands in, so a redelivery is still recognised.
        return "sha256:" + hashlib.sha256(body).hexdigest()[:48]
