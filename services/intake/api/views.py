"""How a case is shown: the public view (no personal data) and the staff view."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.calendar import rfc3339
from shared.db.models import CaseHistoryRow, CaseRow
from shared.domain.clocks import Clock, Terms, clock_statuses, is_overdue, legal_status
from shared.domain.labels import actor_label, timeline_text

_iso = rfc3339


def clocks(case: CaseRow, terms: Terms, now: datetime) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = [
        {
            "clock": status.clock.value,
            **({"department": case.department} if status.clock is Clock.DEPARTMENT else {}),
            "due_at": _iso(status.due_at),
            "days_left": status.days_left,
            "running": True,
            "overdue": status.overdue,
        }
        for status in clock_statuses(case, now, terms)
    ]
    if not result:  # a decided case: its legal term, stopped
        stopped = legal_status(case, now, terms)
        result.append(
            {
                "clock": stopped.clock.value,
                "due_at": _iso(stopped.due_at),
                "days_left": stopped.days_left,
                "running": False,
                "overdue": stopped.overdue,
            }
        )
    return result


def public_history(rows: list[CaseHistoryRow]) -> list[dict[str, Any]]:
    return [
        {"at": _iso(r.at), "action": r.action, "from_state": r.from_state, "to_state": r.to_state}
        for r in rows
        if r.from_state != r.to_state or r.action == "file"
    ]


def staff_history(
    rows: list[CaseHistoryRow], department_name: Callable[[str], str]
) -> list[dict[str, Any]]:
    """The audit trail; ``text`` and ``actor_name`` say it in Spanish, as the console does."""
    return [
        {
            "at": _iso(r.at),
            "actor": r.actor,
            "actor_name": actor_label(r.actor, department_name),
            "action": r.action,
            "text": timeline_text(r.action, r.details, department_name),
            "from_state": r.from_state,
            "to_state": r.to_state,
            "details": r.details or {},
        }
        for r in rows
    ]


def public_view(
    case: CaseRow, history: list[CaseHistoryRow], terms: Terms, now: datetime
) -> dict[str, Any]:
    return {
        "tracking_code": case.tracking_code,
        "state": case.state,
        "kind": case.kind,
        "category": case.category,
        "department": case.department,
        "channel": case.channel,
        "received_at": _iso(case.received_at),
        "due_at": _iso(case.due_at),
        "due_note": case.due_note,
        "remitted_at": _iso(case.remitted_at),
        "resolved_at": _iso(case.resolved_at),
        "closed_at": _iso(case.closed_at),
        "clocks": clocks(case, terms, now),
        "history": public_history(history),
    }


def staff_view(
    case: CaseRow,
    history: list[CaseHistoryRow],
    terms: Terms,
    now: datetime,
    allowed_actions: list[str],
    department_name: Callable[[str], str],
) -> dict[str, Any]:
    """``allowed_actions``: what the state allows *and* the reader may do."""
    view = public_view(case, history, terms, now)
    view.update(
        {
            "case_id": case.id,
            "external_ref": case.external_ref,
            "description": case.description,
            "citizen": case.citizen,
            "notify": case.notify,
            "location": case.location,
            "anonymous": case.anonymous,
            "matched_rule": case.matched_rule,
            "department_due_at": _iso(case.department_due_at),
            "department_due_capped": bool(
                case.remitted_at
                and case.department_due_at
                and terms.department_due_capped(case.remitted_at, case.department_due_at)
            ),
            "resolution": case.resolution,
            "resolution_path": case.resolution_path,
            "decision": case.decision,
            "inspector": case.inspector,
            "return_count": case.return_count,
            "flagged": case.flagged,
            "allowed_actions": allowed_actions,
            "history": staff_history(history, department_name),
        }
    )
    return view


def platform311_view(
    case: CaseRow, history: list[CaseHistoryRow], terms: Terms, now: datetime
) -> dict[str, Any]:
    """What the 311 platform sees: the public view plus the ids it follows a case by."""
    view = public_view(case, history, terms, now)
    view.update({"case_id": case.id, "external_ref": case.external_ref})
    return view


def summary(case: CaseRow, now: datetime) -> dict[str, Any]:
    """One item of the staff list (no citizen data: open the case for that)."""
    return {
        "case_id": case.id,
        "tracking_code": case.tracking_code,
        "state": case.state,
        "kind": case.kind,
        "category": case.category,
        "channel": case.channel,
        "department": case.department,
        "received_at": _iso(case.received_at),
        "due_at": _iso(case.due_at),
        "department_due_at": _iso(case.department_due_at),
        "overdue": is_overdue(case, now),
        "flagged": case.flagged,
        "return_count": case.return_count,
    }
