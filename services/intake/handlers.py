"""Intake's message handlers: 311 submissions arriving on ``case.submitted``."""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

from faststream.rabbit.message import RabbitMessage

from shared.cases import file_case
from shared.consumer import Handler, Poison, Work
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


def decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Poison(f"el cuerpo no es JSON válido: {type(exc).__name__}") from exc


def submission_received(deps: Deps) -> Handler:
    def decode(body: bytes, msg: RabbitMessage) -> Work:
        data = decode_json(body)
        if not isinstance(data, dict):
            raise Poison("el cuerpo debe ser un objeto JSON")
        event_id = _event_id(data, msg)
        try:
            event = validate_submission(data, CaseSubmitted)
        except SubmissionInvalid as exc:
            errors = exc.errors

            async def reject(uow: UnitOfWork) -> None:
                await _reject(uow, deps, data, event_id, errors)

            return Work(reject, claim=(CONSUMER, event_id))
        assert isinstance(event, CaseSubmitted)
        submission = Submission.model_validate(
            event.model_dump(include=set(Submission.model_fields))
        )

        async def work(uow: UnitOfWork) -> None:
            # Another instance may file the same 311 ticket between our look-up and our
            # insert: the unique index refuses ours, the transaction rolls back and the
            # consumer runs this again, when the look-up finds that case and files nothing.
            await _file(uow, deps, submission, event.external_ref, event_id)

        return Work(work, claim=(CONSUMER, event_id), external_ref=event.external_ref)

    return decode


async def _file(
    uow: UnitOfWork, deps: Deps, submission: Submission, external_ref: str, event_id: str
) -> None:
    """File the submission once per event and once per ``external_ref``."""
    now = deps.clock.now()
    case, created = await file_case(
        uow,
        deps.cases,
        submission,
        channel="311",
        actor="platform311",
        now=now,
        external_ref=external_ref,
        check_code=False,  # a clash fails the transaction and the consumer runs it again
    )
    facts = {"case_id": case.id, "tracking_code": case.tracking_code, "event_id": event_id}
    message = "case filed" if created else "duplicate 311 submission ignored"
    uow.after_commit(lambda: log.info(message, extra=facts))


def _event_id(data: dict[str, Any], msg: RabbitMessage) -> str:
    raw = data.get("event_id") or msg.message_id
    try:
        return str(UUID(str(raw)))
    except ValueError:
        # Without a usable id the body's hash stands in, so a redelivery is still recognised.
        import hashlib

        return "sha256:" + hashlib.sha256(msg.body).hexdigest()[:48]


async def _reject(
    uow: UnitOfWork, deps: Deps, data: dict[str, Any], event_id: str, errors: list[FieldError]
) -> None:
    external_ref = data.get("external_ref")
    now = deps.clock.now()
    uow.publish(
        SubmissionRejected(
            external_ref=external_ref if isinstance(external_ref, str) else None,
            refused_event_id=event_id,
            reasons=errors,
            occurred_at=now,
        )
    )
    reason = ",".join(f"{e.field}:{e.rule}" for e in errors)
    uow.after_commit(
        lambda: log.info("submission rejected", extra={"event_id": event_id, "reason": reason})
    )
