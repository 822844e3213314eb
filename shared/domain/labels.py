"""What staff read on a case's timeline, in Spanish: one table, read by the console and the API.

The lifecycle actions' labels are the registry's (:data:`shared.domain.actions.REGISTRY`);
this module adds the audit rows that are not actions (filing, notifications, refusals), the
actors, the channels and the detail keys an audit row may carry. Identifiers stay English in
the data; only what a person reads is translated here.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shared.domain.actions import DEPARTMENT_PREFIX, REGISTRY

#: Audit rows that are not lifecycle actions.
NOTE_LABELS = {
    "file": "Caso registrado",
    "route_refused": "Ruta automática no aplicada",
    "answer_refused": "Respuesta de dependencia rechazada",
    "due_date_changed": "Fecha límite cambiada por cierre de oficinas",
    "notification_queued": "Notificación programada",
    "notification_skipped": "Notificación no enviada",
    "notification_sent": "Notificación enviada",
    "notification_failed": "Notificación fallida",
    "notification_delivered": "Notificación entregada",
    "citizen_key_issued": "Nueva clave entregada al ciudadano",
    "route_held": "Ruta automática en espera: posible duplicado",
    "follow_main": "Sigue un paso del caso principal",
}
ACTOR_LABELS = {
    "staff": "Personal",
    "supervisor": "Supervisión",
    "router": "Enrutador automático",
    "notifier": "Servicio de notificaciones",
    "deadlines": "Control de plazos",
    "platform311": "Plataforma 311",
    "open311": "Plataforma 311 (Open311)",
    "ciudadano": "Ciudadano (web)",
    "system": "Sistema",
}
CHANNEL_LABELS = {"presencial": "Presencial", "web": "Web", "311": "Plataforma 311"}
#: How a notification travels.
DELIVERY_LABELS = {
    "email": "correo electrónico",
    "sms": "mensaje de texto (SMS)",
    "in_person": "entrega en persona",
    "webhook": "aviso a la dependencia (webhook)",
}
KIND_LABELS = {"denuncia": "Denuncia", "queja": "Queja", "sugerencia": "Sugerencia"}
#: Every lifecycle state as staff and citizens read it.
STATE_LABELS = {
    "received": "Recibido",
    "classified": "En revisión",
    "inspection": "En inspección",
    "remitted": "Remitido a la dependencia responsable",
    "on_agenda": "En agenda de reunión",
    "resolved": "Resuelto",
    "closed": "Cerrado",
    "reconsideration": "En reconsideración",
    "appeal": "En apelación ante el superior",
}
#: A recurso's outcome as the console offers it (the body's ``outcome``).
RECOURSE_OUTCOME_LABELS = {
    "confirm": "Confirmar la decisión",
    "revoke": "Revocar la decisión: atender el caso de nuevo",
}
DECISION_LABELS = {
    "accepted": "Aceptada",
    "partially_accepted": "Aceptada en parte",
    "rejected": "Rechazada",
}
TEMPLATE_LABELS = {
    "case_received": "acuse de recibo",
    "case_remitted": "aviso de remisión",
    "case_resolved": "respuesta al ciudadano",
    "deadline_near": "alerta de plazo próximo",
    "deadline_missed": "alerta de plazo vencido",
    "case_reopened": "alerta de caso reabierto",
    "recourse_filed": "acuse del recurso",
    "recourse_decided": "decisión del recurso",
    "case_joined": "aviso de unión al caso principal",
    "case_followed": "paso del caso principal",
    "case_separated": "aviso de separación",
}
_STATUS_LABELS = {
    "pending": "pendiente",
    "sent": "enviada",
    "failed": "fallida",
    "done": "entregada",
}
#: A task is work for a person; what work depends on the channel.
_TASK_LABELS = {
    "sms": "tarea: llamar por teléfono al ciudadano",
    "in_person": "tarea: entregar en persona",
}
# The audit rows' detail keys, as staff read them on the timeline. A key not here (ids, event
# names, template codes) is for the machine and is not shown.
DETAIL_LABELS = {
    "text": "información",
    "grounds": "fundamentos",
    "outcome": "decisión del recurso",
    "reasoning": "motivación",
    "main": "caso principal",
    "step": "paso",
    "candidates": "posibles duplicados",
    "score": "calificación",
    "comment": "comentario",
    "attachments": "adjuntos",
    "channel": "canal",
    "kind": "tipo",
    "category": "categoría",
    "rule": "regla",
    "route": "ruta",
    "by": "por",
    "department": "dependencia",
    "reason": "motivo",
    "response": "respuesta",
    "findings": "hallazgos",
    "decision": "decisión",
    "notes": "notas",
    "meeting_date": "fecha de la reunión",
    "inspector": "inspector",
    "scheduled_for": "fecha prevista",
    "flagged": "marcado para supervisión",
    "return_count": "devoluciones",
    "recipient": "destinatario",
    "attempts": "intentos",
}
#: The notifier's reasons for not sending, as staff read them.
_REASON_LABELS = {
    "no notification address": "el caso no tiene dirección de notificación",
    "no SMS gateway configured: notify by phone": "sin pasarela de SMS: avise por teléfono",
}
_NOTIFICATION_NOTES = frozenset(a for a in NOTE_LABELS if a.startswith("notification_"))


def action_label(action: str) -> str:
    spec = REGISTRY.get(action)
    if spec is not None:
        return spec.label
    return NOTE_LABELS.get(action, action.replace("_", " "))


def actor_label(actor: str, department_name: Callable[[str], str]) -> str:
    """``department:vias`` → the department's name; ``staff:ana`` → ``Personal (ana)``."""
    if actor.startswith(DEPARTMENT_PREFIX):
        return department_name(actor.removeprefix(DEPARTMENT_PREFIX))
    role, _, name = actor.partition(":")
    label = ACTOR_LABELS.get(role, role)
    return f"{label} ({name})" if name else label


def delivery_status_label(status: str, channel: str) -> str:
    if status == "task":
        return _TASK_LABELS.get(channel, "tarea pendiente")
    return _STATUS_LABELS.get(status, status)


def _value(key: str, value: Any, department_name: Callable[[str], str]) -> str:
    if isinstance(value, bool):
        return "sí" if value else "no"
    text = str(value)
    if key == "channel":
        return CHANNEL_LABELS.get(text) or DELIVERY_LABELS.get(text, text)
    if key == "department":
        return department_name(text)
    if key == "kind":
        return KIND_LABELS.get(text, text)
    if key == "decision":
        return DECISION_LABELS.get(text, text)
    if key == "outcome":
        return {"confirm": "confirmada", "revoke": "revocada"}.get(text, text)
    if key == "by":
        return actor_label(text, department_name)
    if key == "step":
        return action_label(text).lower()
    return text


def timeline_text(
    action: str, details: Mapping[str, Any] | None, department_name: Callable[[str], str]
) -> str:
    """One audit row as a sentence: the label, then the details a person needs."""
    details = details or {}
    label = action_label(action)
    if action in _NOTIFICATION_NOTES:
        template = details.get("template")
        what = TEMPLATE_LABELS.get(str(template), "") if template else ""
        channel = DELIVERY_LABELS.get(str(details.get("channel")), "")
        parts = [label + (f" ({what})" if what else "")]
        if channel:
            parts.append(f"por {channel}")
        if details.get("recipient"):
            parts.append(f"a {details['recipient']}")
        text = " ".join(parts)
        if details.get("status"):
            status = delivery_status_label(str(details["status"]), str(details.get("channel")))
            text += f": {status}"
        if details.get("reason"):
            reason = str(details["reason"])
            text += f" (motivo: {_REASON_LABELS.get(reason, reason)})"
        return text
    shown = [
        f"{DETAIL_LABELS[key]}: {_value(key, value, department_name)}"
        for key, value in details.items()
        if key in DETAIL_LABELS
        and isinstance(value, str | int | float)
        and value is not False
        and not (key == "attachments" and value == 0)  # no files: nothing to say
    ]
    return f"{label} ({'; '.join(shown)})" if shown else label
