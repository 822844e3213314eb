"""The routing-key table (DESIGN §4): which event types each key admits, and who may publish.

Every consumer checks a delivery against this table before anything else (see
:mod:`shared.consumer`); the AsyncAPI document (:mod:`shared.asyncapi`) is generated from it.

A key ``case.responded.<code>`` or ``case.returned.<code>`` is a *department key*: the
department ``<code>`` writes there over AMQP with its own least-privilege account, and its
messages carry the AMQP ``user_id`` property, which RabbitMQ verifies against the account the
connection logged in with. A message on a department key is admitted only if its ``user_id``
is that department's account, or the system's own account (the one every service connects
with, which may publish on every key anyway): the HTTP door applies a department's answer
itself and echoes the department's event there, already judged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from shared.contract import (
    CaseAddedToAgenda,
    CaseClassified,
    CaseClosed,
    CaseFollowedMain,
    CaseForwarded,
    CaseJoined,
    CaseReceived,
    CaseRemitted,
    CaseRemittedToDepartment,
    CaseReopened,
    CaseResolved,
    CaseReturnAccepted,
    CaseReturned,
    CaseSeparated,
    CaseSubmitted,
    CitizenAddedInformation,
    DeadlineMissed,
    DeadlineNear,
    DepartmentResponded,
    DueDateChanged,
    Event,
    InspectionStarted,
    NotificationFailed,
    RecourseDecided,
    RecourseFiled,
    SubmissionRejected,
)

Publisher = Literal["system", "department", "platform311"]


@dataclass(frozen=True)
class Route:
    """A routing key pattern (``*`` stands for one word: a department's code), the event
    types the contract admits on it and who publishes them."""

    pattern: str
    events: tuple[type[Event], ...]
    publisher: Publisher
    description: str

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(event_type(model) for model in self.events)

    def matches(self, key: str) -> bool:
        words, pattern = key.split("."), self.pattern.split(".")
        return len(words) == len(pattern) and all(
            p in ("*", w) and w for p, w in zip(pattern, words, strict=True)
        )


def event_type(model: type[Event]) -> str:
    name = model.model_fields["event_type"].default
    assert isinstance(name, str)
    return name


ROUTES: tuple[Route, ...] = (
    Route("case.submitted", (CaseSubmitted,), "platform311", "a 311 submission"),
    Route("case.received", (CaseReceived,), "system", "a case filed (any door)"),
    Route("case.classified", (CaseClassified,), "system", "kind and category known"),
    Route("case.inspection", (InspectionStarted,), "system", "the department inspects"),
    Route(
        "case.remitted.*",
        (CaseRemitted,),
        "system",
        "a case remitted to the department <code>: the public fact (no personal data)",
    ),
    Route(
        "department.*.remitted",
        (CaseRemittedToDepartment,),
        "system",
        "the department <code>'s copy of a case remitted to it, with the citizen's contact "
        "(its queue and the notifier only)",
    ),
    Route(
        "case.responded.*",
        (DepartmentResponded,),
        "department",
        "the department <code>'s answer, to be judged by the router",
    ),
    Route(
        "case.returned.*",
        (CaseReturned,),
        "department",
        "the department <code> gives a case back, to be judged by the router",
    ),
    Route(
        "case.return_accepted",
        (CaseReturnAccepted,),
        "system",
        "a department's return accepted: the case is no longer the department's",
    ),
    Route("case.on_agenda", (CaseAddedToAgenda,), "system", "a suggestion on the agenda"),
    Route("case.resolved", (CaseResolved,), "system", "a case resolved (any path)"),
    Route("case.closed", (CaseClosed,), "system", "a case closed or declined"),
    Route(
        "case.information.*",
        (CitizenAddedInformation,),
        "system",
        "the citizen added information to a case held by the department <code> "
        "(``office``: by the Department itself); no text in it",
    ),
    Route(
        "case.reopened",
        (CaseReopened,),
        "system",
        "the citizen said the case is not resolved: it is handled again with a new legal term",
    ),
    Route(
        "case.recourse_filed",
        (RecourseFiled,),
        "system",
        "a reconsideración or apelación filed against the case's decision (no text in it)",
    ),
    Route(
        "case.recourse_decided",
        (RecourseDecided,),
        "system",
        "a recurso decided: the decision confirmed, or revoked and the case handled again",
    ),
    Route(
        "case.forwarded",
        (CaseForwarded,),
        "system",
        "a petition forwarded to the competent public body",
    ),
    Route(
        "case.joined",
        (CaseJoined,),
        "system",
        "a case joined to a main case as a duplicate: it follows the main case until separated",
    ),
    Route(
        "case.followed",
        (CaseFollowedMain,),
        "system",
        "a joined case took its main case's step (its state mirrors the main case's)",
    ),
    Route(
        "case.separated",
        (CaseSeparated,),
        "system",
        "a joined case separated from its main case: handled on its own again, new legal term",
    ),
    Route("case.rejected", (SubmissionRejected,), "system", "a 311 submission refused"),
    Route(
        "case.rejected.*",
        (SubmissionRejected,),
        "system",
        "the department <code>'s answer refused by the router",
    ),
    Route("deadline.near", (DeadlineNear,), "system", "a term is near its end"),
    Route("deadline.missed", (DeadlineMissed,), "system", "a term has passed"),
    Route(
        "deadline.changed",
        (DueDateChanged,),
        "system",
        "a term moved by a closure (a day closed by decree)",
    ),
    Route(
        "case.notification_failed",
        (NotificationFailed,),
        "system",
        "a notification could not be delivered",
    ),
)


def route_of(key: str) -> Route | None:
    """The route a concrete routing key falls under (None: the contract has no such key)."""
    for route in ROUTES:
        if route.matches(key):
            return route
    return None


def routes_of(model: type[Event]) -> tuple[Route, ...]:
    return tuple(route for route in ROUTES if model in route.events)


def department_account(code: str, prefix: str = "") -> str:
    """The RabbitMQ account of a department (``broker setup`` creates it)."""
    return f"{prefix}dept-{code}"


def account_of(amqp_url: str) -> str:
    """The account an AMQP URL logs in with (AMQP's default when it names none)."""
    user = urlsplit(amqp_url).username
    return unquote(user) if user else "guest"


@dataclass(frozen=True)
class Identities:
    """Who the consumers trust on department keys."""

    system: str  # the services' own account
    department_prefix: str = ""

    def may_publish(self, key: str, user_id: str | None) -> bool:
        route = route_of(key)
        if route is None or route.publisher != "department":
            return True
        department = key.rsplit(".", 1)[-1]
        return user_id in (self.system, department_account(department, self.department_prefix))


class Refused(Exception):
    """A delivery the routing table does not admit: dead-letter it with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def peek_event_type(body: bytes) -> str:
    """The body's ``event_type`` (the full schema is checked later, by the handler)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Refused("el cuerpo no es JSON válido") from exc
    if not isinstance(data, dict):
        raise Refused("el cuerpo debe ser un objeto JSON")
    value = data.get("event_type")
    if not isinstance(value, str):
        raise Refused("falta event_type o no es un texto")
    return value


def check(
    key: str,
    body: bytes,
    user_id: str | None,
    identities: Identities,
    consumes: tuple[str, ...] | None = None,
) -> str:
    """Raise :class:`Refused` unless the key admits the body's event type and its publisher
    (``user_id``); return the event type. ``consumes`` narrows the admitted types to the
    ones this consumer handles."""
    route = route_of(key)
    if route is None:
        raise Refused(f"clave de enrutamiento fuera del contrato: {key!r}")
    name = peek_event_type(body)
    if name not in route.event_types:
        admitted = ", ".join(route.event_types)
        raise Refused(f"event_type {name[:60]!r} no admitido en {key!r} (admite: {admitted})")
    if consumes is not None and name not in consumes:
        raise Refused(f"event_type {name!r} no es de este consumidor")
    if not identities.may_publish(key, user_id):
        department = key.rsplit(".", 1)[-1]
        expected = department_account(department, identities.department_prefix)
        if user_id:
            raise Refused(f"user_id {user_id[:60]!r} no es la cuenta {expected!r} de {key!r}")
        raise Refused(f"falta user_id: {key!r} exige la cuenta {expected!r}")
    return name
