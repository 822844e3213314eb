"""The committed AsyncAPI document is the one the code generates."""

from __future__ import annotations

import json
from pathlib import Path

from shared.asyncapi import render
from shared.settings import Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"


def test_committed_asyncapi_document_is_current() -> None:
    generated = render(Settings())
    assert DOC.read_text(encoding="utf-8") == generated, (
        "docs/asyncapi.json is stale: run `defensa311 asyncapi -o docs/asyncapi.json`"
    )


def test_document_names_every_event_and_queue() -> None:
    doc = json.loads(render(Settings()))
    assert doc["asyncapi"].startswith("3.")
    messages = set(doc["components"]["messages"])
    assert {
        "CaseSubmitted",
        "CaseReceived",
        "CaseClassified",
        "CaseRemitted",
        "DepartmentResponded",
        "SubmissionRejected",
        "DeadlineNear",
        "DeadlineMissed",
    } <= messages
    queues = doc["info"]["x-queues"]
    assert queues["defensa311.intake"]["dead_letter_queue"] == "defensa311.intake.dlq"
    assert all(q["type"] == "quorum" for q in queues.values())
