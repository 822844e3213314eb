"""Message templates of the notifier (Jinja2), in Spanish (Panamá, formal "usted").

Every message kind has four files in ``services/notifier/templates/``::

    <kind>.subject.j2   one line (whitespace is collapsed; never contains a line break)
    <kind>.txt.j2       the plain-text part (no escaping)
    <kind>.html.j2      the HTML part (autoescaped; extends ``_layout.html.j2``)
    <kind>.sms.j2       the SMS text (whitespace collapsed, at most 300 characters)

A deployment may override any of them (including ``_layout.html.j2``) by putting a file with the
same name in a folder and passing it as ``TemplateRenderer(override_dir=...)``: the override folder
is searched first, then the package. New kinds can be added the same way.

Rendering uses ``StrictUndefined``: a *required* key missing from the context raises
``jinja2.UndefinedError``. *Optional* keys are guarded in the templates (``is defined`` /
``default``) and may be left out.

Date values (``received_at``, ``due_at``, ``resolved_at``, ``remitted_at``) may be aware
``datetime`` objects, ``date`` objects or ISO 8601 / RFC 3339 strings; naive datetimes are taken as
UTC. They are shown in America/Panama time, in Spanish, without system locales:
``martes 15 de diciembre de 2026, 23:59`` (filter ``fecha``), ``15 de diciembre de 2026``
(``fecha_corta``) and ``15/12/2026 23:59`` (``fecha_sms``).

Context keys
------------

Common to every kind:

- ``tracking_code`` (required): the case's public tracking code.
- ``kind`` (required): ``denuncia`` | ``queja`` | ``sugerencia`` (shown as "Denuncia", ...).
- ``institution`` (required): name of the institution, e.g. "Alcaldía de Panamá".
- ``office`` (required): e.g. "Departamento Defensa del Usuario – 311".
- ``public_url`` (required): base URL of the public site, without trailing slash; the tracking
  page is ``{public_url}/seguimiento/{tracking_code}``.
- ``line_311`` (optional, default ``"311"``): the phone line shown to citizens.
- ``business_days`` (optional, default ``True``): whether day counts are "días hábiles".

``case_received`` (to the citizen; receipt):
    ``received_at`` (required, filing date), ``due_at`` (required, legal due date);
    optional: ``category`` (str), ``citizen`` (mapping; ``citizen.name`` is used in the greeting),
    ``clave_url`` (the signed link to the page that issues the citizen's clave, added as the
    e-mail is sent, :mod:`shared.domain.key_link`) with ``clave_link.expires_at``; without it
    the message says where to get a clave. The clave itself is never in a message.

``case_remitted`` (to the department's contact; the case to act on):
    ``department_name`` (required), ``department_code`` (required; answers go to the routing key
    ``case.responded.<department_code>``), ``category`` (required), ``description`` (required),
    ``location`` (required, may be empty), ``citizen`` (required mapping with optional keys
    ``name``, ``email``, ``phone``, ``address`` — the notification address), ``received_at``
    (required), ``due_at`` (required, the department's due date);
    optional: ``console_url`` (default ``{public_url}/consola``), ``remitted_at``.

``deadline_near`` (to the department and/or the supervisor):
    ``clock`` (required: ``legal`` = the legal term from filing, ``department`` = the remitted
    department's term), ``due_at`` (required), ``days_left`` (required, int);
    optional: ``department_name``, ``category``, ``console_url``.

``deadline_missed`` (escalation to the supervisor and the department):
    ``clock`` (required), ``due_at`` (required);
    optional: ``days_overdue`` (int), ``department_name``, ``category``, ``console_url``.

``case_resolved`` (to the citizen; the resolution):
    ``response`` (required, the resolution text), ``received_at`` (required);
    optional: ``resolved_at``, ``department_name``, ``citizen`` (``citizen.name``),
    ``appeal_days`` (default 5: business days to file a reconsideration/appeal).

``due_date_changed`` (to the citizen for the legal term, to the department for its own):
    ``clock`` (required), ``previous_due_at`` (required), ``due_at`` (required), ``reason``
    (required, naming the decree); optional: ``department_name`` (addressed to the department),
    ``citizen`` (``citizen.name``), ``console_url``.

``case_reopened`` (to the supervisors; the citizen said the case is not resolved):
    ``due_at`` (required, the new legal due date); optional: ``department_name`` (the department
    whose answer is disputed), ``category``, ``console_url``.

``recourse_filed`` (to the citizen; a reconsideración or apelación was filed):
    ``recourse_name`` (required: ``reconsideración`` | ``apelación``), ``decider`` (required, who
    decides it), ``filed_at`` (required), ``due_at`` (required, the decision's due date);
    optional: ``citizen`` (``citizen.name``).

``recourse_decided`` (to the citizen; the recurso's reasoned decision):
    ``recourse_name`` (required), ``outcome`` (required: ``confirmed`` | ``revoked``),
    ``reasoning`` (required), ``decided_at`` (required); ``due_at`` (the new legal due date,
    when revoked); optional: ``appeal_ends`` and ``appeal_days`` (a confirmed reconsideración:
    until when the apelación may be filed), ``citizen`` (``citizen.name``).

``case_declined`` (to the citizen; the office declined the petition):
    ``decline_label`` (required, the configured reason), ``reason`` (required, the explanation),
    ``received_at`` (required); optional: ``citizen`` (``citizen.name``), ``appeal_days``.

``case_forwarded`` (to the citizen) and ``case_forwarded_entity`` (to the competent body):
    ``entity_name`` (required), ``note`` (required), ``received_at`` (required); the entity's
    also ``description`` (required) and ``citizen`` (mapping: ``name``, ``email``, ``phone``,
    ``address``, the notification address).

``render_sms(kind, context)`` takes the same context as ``render(kind, context)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)

from shared.domain.labels import KIND_LABELS
from shared.spanish import WEEKDAYS, long_date

__all__ = [
    "MESSAGE_KINDS",
    "SMS_MAX_CHARS",
    "RenderedMessage",
    "TemplateRenderer",
    "format_date_es",
    "format_datetime_es",
]

PACKAGE_TEMPLATES = Path(__file__).resolve().parent / "templates"
MESSAGE_KINDS = (
    "case_received",
    "case_remitted",
    "deadline_near",
    "deadline_missed",
    "case_resolved",
    "due_date_changed",
    "case_reopened",
    "recourse_filed",
    "recourse_decided",
    "case_declined",
    "case_forwarded",
    "case_forwarded_entity",
    "case_joined",
    "case_followed",
    "case_separated",
)
SMS_MAX_CHARS = 300
DEFAULT_TIMEZONE = "America/Panama"

_CLOCK_LABELS = {
    "legal": "plazo legal de resolución",
    "department": "plazo de respuesta del departamento",
    "recourse": "plazo para decidir el recurso",
}
_KIND_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_WS = re.compile(r"\s+")


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name == DEFAULT_TIMEZONE:
            # Panamá has no daylight saving time: UTC-5 all year.
            return timezone(timedelta(hours=-5), "EST")
        raise


def _to_datetime(value: datetime | date | str, tz: tzinfo) -> datetime | date:
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            value = date.fromisoformat(text)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(tz)
    return value


def format_datetime_es(value: datetime | date | str, tz: str = DEFAULT_TIMEZONE) -> str:
    """``martes 15 de diciembre de 2026, 23:59`` (a bare date omits the time)."""
    moment = _to_datetime(value, _zone(tz))
    day = f"{WEEKDAYS[moment.weekday()]} {long_date(moment)}"
    if isinstance(moment, datetime):
        return f"{day}, {moment.hour:02d}:{moment.minute:02d}"
    return day


def format_date_es(value: datetime | date | str, tz: str = DEFAULT_TIMEZONE) -> str:
    """``15 de diciembre de 2026``."""
    return long_date(_to_datetime(value, _zone(tz)))


def _format_sms_datetime(value: datetime | date | str, tz: str) -> str:
    moment = _to_datetime(value, _zone(tz))
    day = f"{moment.day:02d}/{moment.month:02d}/{moment.year}"
    if isinstance(moment, datetime):
        return f"{day} {moment.hour:02d}:{moment.minute:02d}"
    return day


def _kind_label(kind: str) -> str:
    return KIND_LABELS.get(str(kind), str(kind).capitalize())


def _clock_label(clock: str) -> str:
    return _CLOCK_LABELS.get(str(clock), str(clock))


def _days(count: int | str, business: bool = True) -> str:
    """``1 día hábil`` / ``3 días hábiles`` (``business=False``: ``3 días``)."""
    number = int(count)
    if business:
        return f"{number} día hábil" if abs(number) == 1 else f"{number} días hábiles"
    return f"{number} día" if abs(number) == 1 else f"{number} días"


def _one_line(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


class TemplateRenderer:
    """Renders the notifier's messages; ``override_dir`` (if any) wins over the package files."""

    def __init__(self, override_dir: Path | None = None, *, tz: str = DEFAULT_TIMEZONE) -> None:
        _zone(tz)  # fail early on an unknown zone
        loaders: list[BaseLoader] = []
        if override_dir is not None:
            loaders.append(FileSystemLoader(str(override_dir)))
        loaders.append(FileSystemLoader(str(PACKAGE_TEMPLATES)))
        self._env = Environment(
            loader=ChoiceLoader(loaders),
            # HTML parts are escaped; subject, text and SMS parts are not HTML
            autoescape=select_autoescape(
                enabled_extensions=("html.j2", "html"),
                default_for_string=False,
                default=False,
            ),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,  # read once: no stat of every template file on every render
        )
        self._env.filters["fecha"] = lambda v: format_datetime_es(v, tz)
        self._env.filters["fecha_corta"] = lambda v: format_date_es(v, tz)
        self._env.filters["fecha_sms"] = lambda v: _format_sms_datetime(v, tz)
        self._env.filters["tipo"] = _kind_label
        self._env.filters["plazo"] = _clock_label
        self._env.filters["dias"] = _days

    def render(self, kind: str, context: Mapping[str, Any]) -> RenderedMessage:
        """Subject, text and HTML of ``kind``; raises ``jinja2.UndefinedError`` on a missing key."""
        data = dict(context)
        subject = _one_line(self._template(kind, "subject").render(data))
        text = self._template(kind, "txt").render(data).strip() + "\n"
        html = self._template(kind, "html").render(data).strip() + "\n"
        return RenderedMessage(subject=subject, text=text, html=html)

    def render_sms(self, kind: str, context: Mapping[str, Any]) -> str:
        """The short text variant of ``kind``: one line, at most ``SMS_MAX_CHARS`` characters."""
        text = _one_line(self._template(kind, "sms").render(dict(context)))
        return _truncate(text, SMS_MAX_CHARS)

    def _template(self, kind: str, part: str) -> Any:
        if not _KIND_NAME.match(kind):
            raise ValueError(f"invalid message kind {kind!r}")
        try:
            return self._env.get_template(f"{kind}.{part}.j2")
        except TemplateNotFound as exc:
            raise ValueError(f"no {part!r} template for message kind {kind!r}") from exc
