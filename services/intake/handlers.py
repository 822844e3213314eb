"""Intake's message handlers: 311 submissions arriving on ``case.submitted``."""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

from faststream.rabbit.message import RabbitMessage
from sqlalchemy.exc import IntegrityError

from shared.cases import file_case
from shared.consumer import Handler, Poison
from shared.contract import (
    CaseSubmitted,
    FieldError,
    Submission,
    SubmissionInvalid,
    SubmissionRejected,
    validate_submission,
)
from shared.db.models import CaseRow
from shared.runtime import Deps

CONSUMER = "intake"
log = logging.getLogger("defensa311.intake")


def decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Poison(f"el cuerpo no es JSON válido: {type(exc).__name__}") from exc


def submission_received(deps: Deps) -> Handler:
    async def handle(body: bytes, msg: RabbitMessage) -> None:
        data = decode_json(body)
        if not isinstance(data, dict):
            raise Poison("el cuerpo debe ser un objeto JSON")
        event_id = _event_id(data, msg)
        try:
            event = validate_submission(data, CaseSubmitted)
        except SubmissionInvalid as exc:
            await _reject(deps, data, event_id, exc.errors)
            return
        assert isinstance(event, CaseSubmitted)
        try:
            filed = await _file(deps, event, event_id)
        except IntegrityError:
            # Another instance filed the same 311 ticket (or took the same event) between our
            # look-up and our insert: the unique index refused ours and rolled it back. A
            # fresh transaction now sees that case and files nothing.
            filed = await _file(deps, event, event_id)
        if filed is None:
            return
        case, created = filed
        log.info(
            "case filed" if created else "duplicate 311 submission ignored",
            extra={"case_id": case.id, "tracking_code": case.tracking_code, "event_id": event_id},
        )

    return handle


async def _file(deps: Deps, event: CaseSubmitted, event_id: str) -> tuple[CaseRow, bool] | None:
    """File the submission once per event and once per ``external_ref``; None if seen."""
    now = deps.clock.now()
    async with deps.uow() as uow:
        if not await uow.claim(CONSUMER, event_id, now):
            return None
        case, created = await file_case(
            uow,
            deps.cases,
            Submission.model_validate(event.model_dump(include=set(Submission.model_fields))),
            channel="311",
            actor="platform311",
            now=now,
            external_ref=event.external_ref,
        )
    return case, created


def _event_id(data: dict[str, Any], msg: RabbitMessage) -> str:
    raw = data.get("event_id") or msg.message_id
    try:
        return str(UUID(str(raw)))
    except ValueError:
        # Without a usable id the body's hash stands in, so a redelivery is still recognised.
        import hashlib

        return "sha256:" + hashlib.sha256(msg.body).hexdigest()[:48]


async def _reject(
    deps: Deps, data: dict[str, Any], event_id: str, errors: list[FieldError]
) -> None:
    external_ref = data.get("external_ref")
    now = deps.clock.now()
    async with deps.uow() as uow:
        if not await uow.claim(CONSUMER, event_id, now):
            return
        uow.publish(
            SubmissionRejected(
                external_ref=external_ref if isinstance(external_ref, str) else None,
                refused_event_id=event_id,
                reasons=errors,
                occurred_at=now,
            )
        )
    log.info(
        "submission rejected",
        extra={"event_id": event_id, "reason": ",".join(f"{e.field}:{e.rule}" for e in errors)},
    )
