"""The case lifecycle (DESIGN §3), guarded by one shared ``transitions`` machine.

Pure: no I/O. The table of transitions is the action registry's
(:data:`shared.domain.actions.TRANSITIONS`, one row per action); :meth:`Lifecycle.apply`
answers the next state for an action or raises :class:`IllegalTransition` naming the actions
that *are* allowed. Persisting the new state, the audit row and the outgoing events is the
caller's job, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, NamedTuple

from transitions import Machine, MachineError


class State(StrEnum):
    RECEIVED = "received"
    CLASSIFIED = "classified"
    INSPECTION = "inspection"
    REMITTED = "remitted"
    ON_AGENDA = "on_agenda"
    RESOLVED = "resolved"
    CLOSED = "closed"
    #: A recurso against the decision (Ley 38 de 2000) awaits its own decision.
    RECONSIDERATION = "reconsideration"
    APPEAL = "appeal"


#: The case is being handled: the legal term runs.
OPEN_STATES = frozenset(
    {State.RECEIVED, State.CLASSIFIED, State.INSPECTION, State.REMITTED, State.ON_AGENDA}
)
#: A recurso against the decision is pending: the recurso's own term runs
#: (:mod:`shared.domain.clocks`), the legal term of the handling does not.
RECOURSE_STATES = frozenset({State.RECONSIDERATION, State.APPEAL})
#: The office owes a decision: the handling's legal term or a recurso's term runs.
PENDING_STATES = OPEN_STATES | RECOURSE_STATES


class Transition(NamedTuple):
    """One row of the lifecycle table; ``condition`` names a guard on the case's kind.

    ``destination`` None: the machine does not move the case (adding information, a survey
    answer), but the action is still allowed only in ``sources``. A decision on a recurso is
    such a row too: its outcome, not the table, says where the case goes (the verb on
    :class:`~shared.domain.case.Case` names the states).
    """

    action: str
    sources: tuple[State, ...]
    destination: State | None
    condition: str | None = None


class DomainError(Exception):
    """Base of the domain's refusals."""


class UnknownAction(DomainError):
    def __init__(self, action: str) -> None:
        super().__init__(f"acción desconocida: {action}")
        self.action = action


@dataclass
class IllegalTransition(DomainError):
    state: str
    action: str
    allowed: list[str]
    kind: str | None = None

    def __str__(self) -> str:
        allowed = ", ".join(self.allowed) or "ninguna"
        detail = f" para una {self.kind}" if self.kind else ""
        return (
            f"la acción «{self.action}» no está permitida en el estado «{self.state}»{detail}; "
            f"permitidas: {allowed}"
        )

    def only(self, may: Iterable[str]) -> IllegalTransition:
        """The same refusal naming only the allowed actions the caller may take."""
        mine = set(may)
        return replace(self, allowed=[a for a in self.allowed if a in mine])


class _Subject:
    """What the machine sees of a case while one action is evaluated."""

    def __init__(self, kind: str | None) -> None:
        self.kind = kind
        self.state: str = State.RECEIVED

    def is_inspectable(self, *_: Any) -> bool:
        return self.kind in ("denuncia", "queja")

    def is_denuncia(self, *_: Any) -> bool:
        return self.kind == "denuncia"

    def is_sugerencia(self, *_: Any) -> bool:
        return self.kind == "sugerencia"


def _trigger_name(action: str) -> str:
    # ``return`` is a Python keyword; the machine gets a safe attribute name for it.
    return f"do_{action}"


class Lifecycle:
    """One machine shared by every case; a case is bound to it only while an action runs."""

    def __init__(self, transitions: Iterable[Transition]) -> None:
        self._transitions = tuple(transitions)
        self.actions: tuple[str, ...] = tuple(dict.fromkeys(t.action for t in self._transitions))
        self._decided: dict[tuple[str, str, str | None], State | None] = {}
        self._machine = Machine(
            model=None,
            states=[s.value for s in State],
            initial=State.RECEIVED.value,
            auto_transitions=False,
            ignore_invalid_triggers=False,
        )
        for action, sources, dest, condition in self._transitions:
            self._machine.add_transition(
                _trigger_name(action),
                [s.value for s in sources],
                dest.value if dest is not None else None,
                conditions=[condition] if condition else None,
            )

    def apply(self, state: str, action: str, kind: str | None) -> State:
        """The state after ``action``; raises UnknownAction or IllegalTransition.

        The machine decides; its answer depends on nothing but (state, action, kind), so it
        is remembered: binding a case to the machine costs more than the rest of an action.
        """
        key = (state, action, kind)
        if key not in self._decided:
            self._decided[key] = self._ask_machine(state, action, kind)
        moved = self._decided[key]
        if moved is None:
            raise IllegalTransition(state, action, self.allowed(state, kind), kind)
        return moved

    def _ask_machine(self, state: str, action: str, kind: str | None) -> State | None:
        if action not in self.actions:
            raise UnknownAction(action)
        subject = _Subject(kind)
        self._machine.add_model(subject, initial=state)
        try:
            moved = bool(getattr(subject, _trigger_name(action))())
        except MachineError:
            moved = False
        finally:
            self._machine.remove_model(subject)
        return State(subject.state) if moved else None

    def allowed(self, state: str, kind: str | None) -> list[str]:
        subject = _Subject(kind)
        allowed = []
        for action, sources, _dest, condition in self._transitions:
            if state not in sources:
                continue
            if condition and not getattr(subject, condition)():
                continue
            allowed.append(action)
        return allowed


def is_open(state: str) -> bool:
    return state in OPEN_STATES
