"""How a case is shown: the public view (no personal data) and the staff view."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.calendar import TZ, days_left
from shared.cases import Terms
from shared.db.models import CaseHistoryRow, CaseRow
from shared.lifecycle import Lifecycle, is_open


def rfc3339(value: datetime | None) -> str | None:
    """Every timestamp the API answers: RFC 3339 with the institution's offset (-05:00)."""
    return value.astimezone(TZ).isoformat() if value else None


_iso = rfc3339


def clocks(case: CaseRow, terms: Terms, now: datetime) -> list[dict[str, Any]]:
    result = [
        {
            "clock": "legal",
            "due_at": _iso(case.due_at),
            "days_left": days_left(case.due_at, now, terms.calendar),
            "running": is_open(case.state),
            "overdue": is_open(case.state) and now > case.due_at,
        }
    ]
    if case.department_due_at is not None and case.state == "remitted":
        result.append(
            {
                "clock": "department",
                "department": case.department,
                "due_at": _iso(case.department_due_at),
                "days_left": days_left(case.department_due_at, now, terms.calendar),
                "running": True,
                "overdue": now > case.department_due_at,
            }
        )
    return result


def public_history(rows: list[CaseHistoryRow]) -> list[dict[str, Any]]:
    return [
        {"at": _iso(r.at), "action": r.action, "from_state": r.from_state, "to_state": r.to_state}
        for r in rows
        if r.from_state != r.to_state or r.action == "file"
    ]


def staff_history(rows: list[CaseHistoryRow]) -> list[dict[str, Any]]:
    return [
        {
            "at": _iso(r.at),
            "actor": r.actor,
            "action": r.action,
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
    lifecycle: Lifecycle,
) -> dict[str, Any]:
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
            "resolution": case.resolution,
            "resolution_path": case.resolution_path,
            "decision": case.decision,
            "inspector": case.inspector,
            "return_count": case.return_count,
            "flagged": case.flagged,
            "allowed_actions": lifecycle.allowed(case.state, case.kind),
            "history": staff_history(history),
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


def is_overdue(case: CaseRow, now: datetime) -> bool:
    """An open case past its legal term, or a remitted one past the department's."""
    if not is_open(case.state):
        return False
    if now > case.due_at:
        return True
    return (
        case.state == "remitted"
        and case.department_due_at is not None
        and now > case.department_due_at
    )


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
