"""Rendering of the notifier's message templates (Spanish, America/Panama dates, escaping)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError

from services.notifier.templates import (
    MESSAGE_KINDS,
    SMS_MAX_CHARS,
    TemplateRenderer,
    format_date_es,
    format_datetime_es,
)

CODE = "D311-2026-000123"
# 2026-12-16T04:59Z is Tuesday 15 December 2026, 23:59 in Panamá (UTC-5).
DUE = datetime(2026, 12, 16, 4, 59, tzinfo=UTC)
DUE_TEXT = "martes 15 de diciembre de 2026, 23:59"
RECEIVED = datetime(2026, 11, 3, 14, 5, tzinfo=UTC)
RECEIVED_TEXT = "martes 3 de noviembre de 2026, 09:05"
SCRIPT = "<script>alert('x')</script>"


def base_context(**extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "tracking_code": CODE,
        "kind": "denuncia",
        "institution": "Alcaldía de Panamá",
        "office": "Departamento Defensa del Usuario – 311",
        "public_url": "https://defensa311.example",
        "received_at": RECEIVED,
        "due_at": DUE,
    }
    context.update(extra)
    return context


def remitted_context(**extra: Any) -> dict[str, Any]:
    context = base_context(
        category="Recolección de basura",
        description=f"Basura acumulada en la esquina {SCRIPT}",
        location="Calle 50, Bella Vista",
        department_name="Dirección de Aseo Urbano y Domiciliario",
        department_code="aseo",
        citizen={
            "name": "Juan Pérez",
            "email": "juan.perez@example.com",
            "phone": "+507 6123-4567",
            "address": "Vía España, edificio 3",
        },
    )
    context.update(extra)
    return context


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer()


def test_spanish_date_formatting_in_panama_time() -> None:
    assert format_datetime_es(DUE) == DUE_TEXT
    assert format_datetime_es("2026-12-16T04:59:00Z") == DUE_TEXT
    assert format_datetime_es("2026-12-15T23:59:00-05:00") == DUE_TEXT
    # naive datetimes are UTC
    assert format_datetime_es(datetime(2026, 12, 16, 4, 59)) == DUE_TEXT
    assert format_datetime_es(date(2027, 1, 3)) == "domingo 3 de enero de 2027"
    assert format_date_es(DUE) == "15 de diciembre de 2026"
    assert format_datetime_es(datetime(2026, 9, 2, 17, 0, tzinfo=UTC)).startswith(
        "miércoles 2 de septiembre de 2026, 12:00"
    )


def test_case_received(renderer: TemplateRenderer) -> None:
    msg = renderer.render("case_received", base_context(citizen={"name": "Ana <b>Ruiz</b>"}))
    assert CODE in msg.subject and "Constancia de recibo" in msg.subject
    assert "\n" not in msg.subject
    for part in (msg.text, msg.html):
        assert CODE in part
        assert DUE_TEXT in part
        assert RECEIVED_TEXT in part
        assert "Denuncia" in part
        assert f"https://defensa311.example/seguimiento/{CODE}" in part
        assert "311" in part
        assert "Código de seguimiento" in part
    assert "Estimado(a) Ana <b>Ruiz</b>:" in msg.text
    assert "Ana &lt;b&gt;Ruiz&lt;/b&gt;" in msg.html
    assert '<html lang="es-PA">' in msg.html


def test_case_received_without_optional_keys(renderer: TemplateRenderer) -> None:
    msg = renderer.render("case_received", base_context())
    assert "Estimado(a) ciudadano(a):" in msg.text
    assert "Categoría" not in msg.text


def test_case_remitted(renderer: TemplateRenderer) -> None:
    msg = renderer.render("case_remitted", remitted_context())
    assert CODE in msg.subject and "Caso remitido" in msg.subject
    assert "15 de diciembre de 2026" in msg.subject
    for part in (msg.text, msg.html):
        assert CODE in part
        assert DUE_TEXT in part
        assert "Recolección de basura" in part
        assert "Calle 50, Bella Vista" in part
        assert "Juan Pérez" in part
        assert "juan.perez@example.com" in part
        assert "Dirección para notificaciones" in part
        assert "case.responded.aseo" in part
        assert "https://defensa311.example/consola" in part
        assert "Fecha límite de respuesta" in part
    assert SCRIPT in msg.text  # the text part is not HTML
    assert "<script>" not in msg.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in msg.html


def test_case_remitted_without_contact_or_location(renderer: TemplateRenderer) -> None:
    msg = renderer.render("case_remitted", remitted_context(location="", citizen={}))
    assert "No se registraron datos de contacto." in msg.text
    assert "Ubicación: No indicada" in msg.text


def test_deadline_near(renderer: TemplateRenderer) -> None:
    ctx = base_context(clock="department", days_left=3, department_name="Tesorería Municipal")
    msg = renderer.render("deadline_near", ctx)
    assert CODE in msg.subject and "Vence en 3 días hábiles" in msg.subject
    for part in (msg.text, msg.html):
        assert CODE in part
        assert DUE_TEXT in part
        assert "plazo de respuesta del departamento" in part
        assert "3 días hábiles" in part
        assert "Tesorería Municipal" in part
    one = renderer.render("deadline_near", base_context(clock="legal", days_left=1))
    assert "1 día hábil" in one.text and "plazo legal de resolución" in one.text
    today = renderer.render("deadline_near", base_context(clock="legal", days_left=0))
    assert today.subject.startswith("Vence hoy")
    calendar = renderer.render(
        "deadline_near", base_context(clock="legal", days_left=2, business_days=False)
    )
    assert "2 días" in calendar.text and "hábiles" not in calendar.subject


def test_deadline_missed(renderer: TemplateRenderer) -> None:
    ctx = base_context(
        clock="legal", days_overdue=2, department_name="Dirección de Mantenimiento Vial"
    )
    msg = renderer.render("deadline_missed", ctx)
    assert CODE in msg.subject and "vencido" in msg.subject.lower()
    for part in (msg.text, msg.html):
        assert CODE in part
        assert DUE_TEXT in part
        assert "plazo legal de resolución" in part
        assert "2 días hábiles" in part
        assert "supervisión" in part


def test_case_resolved(renderer: TemplateRenderer) -> None:
    ctx = base_context(
        kind="queja",
        response=f"Se realizó la inspección y se corrigió la situación. {SCRIPT}",
        resolved_at=DUE,
        department_name="Dirección de Aseo Urbano y Domiciliario",
    )
    msg = renderer.render("case_resolved", ctx)
    assert CODE in msg.subject and "Respuesta a su queja" in msg.subject
    for part in (msg.text, msg.html):
        assert CODE in part
        assert DUE_TEXT in part
        assert "Se realizó la inspección" in part
        assert "reconsideración o apelación" in part
        assert "5 días hábiles" in part
        assert f"/seguimiento/{CODE}" in part
    assert "<script>" not in msg.html and "&lt;script&gt;" in msg.html


@pytest.mark.parametrize(
    ("kind", "missing"),
    [
        ("case_received", "due_at"),
        ("case_remitted", "description"),
        ("deadline_near", "days_left"),
        ("deadline_missed", "clock"),
        ("case_resolved", "response"),
    ],
)
def test_missing_key_raises(renderer: TemplateRenderer, kind: str, missing: str) -> None:
    ctx = remitted_context(clock="legal", days_left=3, response="Listo.")
    del ctx[missing]
    with pytest.raises(UndefinedError):
        renderer.render(kind, ctx)
    del ctx["tracking_code"]
    with pytest.raises(UndefinedError):
        renderer.render_sms(kind, ctx)


@pytest.mark.parametrize("kind", MESSAGE_KINDS)
def test_sms_is_short_and_has_the_code(renderer: TemplateRenderer, kind: str) -> None:
    ctx = remitted_context(
        clock="department",
        days_left=2,
        days_overdue=1,
        response="Resuelto. " * 200,
        decline_label="Petición improcedente",
        reason="No corresponde. " * 50,
        entity_name="Instituto de Acueductos y Alcantarillados Nacionales",
        note="Corresponde al IDAAN. " * 20,
        recourse_name="reconsideración",
        decider="el Departamento que tomó la decisión",
        filed_at=RECEIVED,
        outcome="confirmed",
        reasoning="Se verificó. " * 100,
        decided_at=RECEIVED,
        appeal_ends=DUE,
        main_tracking_code="D311-2026-000099",
        step_label="Respuesta de la dependencia registrada",
        state="resolved",
        state_label="Resuelto",
        resolution="Se reparó. " * 100,
        separated_at=RECEIVED,
    )
    sms = renderer.render_sms(kind, ctx)
    assert len(sms) <= SMS_MAX_CHARS
    assert CODE in sms
    assert "\n" not in sms
    assert "juan.perez@example.com" not in sms  # no personal data in SMS


def test_sms_is_truncated_when_values_are_long(renderer: TemplateRenderer) -> None:
    ctx = base_context(institution="Institución " * 60)
    sms = renderer.render_sms("case_received", ctx)
    assert len(sms) == SMS_MAX_CHARS
    assert sms.endswith("…")


def test_unknown_kind_is_refused(renderer: TemplateRenderer) -> None:
    with pytest.raises(ValueError, match="no_such_kind"):
        renderer.render("no_such_kind", base_context())
    with pytest.raises(ValueError, match="invalid"):
        renderer.render("../etc/passwd", base_context())


def test_override_folder_wins(tmp_path: Path) -> None:
    (tmp_path / "case_received.subject.j2").write_text(
        "Recibimos su caso {{ tracking_code }} (plantilla local)", encoding="utf-8"
    )
    (tmp_path / "_layout.html.j2").write_text(
        "<main class='local'>{% block content %}{% endblock %}</main>", encoding="utf-8"
    )
    renderer = TemplateRenderer(override_dir=tmp_path)
    msg = renderer.render("case_received", base_context())
    assert msg.subject == f"Recibimos su caso {CODE} (plantilla local)"
    assert msg.html.startswith("<main class='local'>")
    assert DUE_TEXT in msg.text  # the text part still comes from the package
    # a new kind can be added from the override folder
    for part, body in {
        "subject": "Aviso {{ tracking_code }}",
        "txt": "Texto {{ tracking_code }}",
        "html": "<p>{{ note }}</p>",
        "sms": "SMS {{ tracking_code }}",
    }.items():
        (tmp_path / f"aviso_especial.{part}.j2").write_text(body, encoding="utf-8")
    extra = renderer.render("aviso_especial", {"tracking_code": CODE, "note": "<i>"})
    assert extra.html.strip() == "<p>&lt;i&gt;</p>"
    assert renderer.render_sms("aviso_especial", {"tracking_code": CODE}) == f"SMS {CODE}"


def test_a_recurso_filed_and_decided_tell_the_citizen_what_comes_next(
    renderer: TemplateRenderer,
) -> None:
    filed = renderer.render(
        "recourse_filed",
        base_context(
            recourse_name="apelación",
            decider="el superior jerárquico",
            filed_at=RECEIVED,
            citizen={"name": "Ana"},
        ),
    )
    assert "recurso de apelación" in filed.subject
    assert "el superior jerárquico" in filed.text and CODE in filed.text
    confirmed = renderer.render(
        "recourse_decided",
        base_context(
            recourse_name="reconsideración",
            outcome="confirmed",
            reasoning=f"Se verificó la reparación. {SCRIPT}",
            decided_at=RECEIVED,
            appeal_ends=DUE,
            appeal_days=5,
        ),
    )
    assert "se confirma la decisión recurrida" in confirmed.text
    assert "recurso de apelación ante el superior" in confirmed.text
    assert SCRIPT not in confirmed.html  # the reasoning is escaped
    revoked = renderer.render(
        "recourse_decided",
        base_context(
            recourse_name="apelación",
            outcome="revoked",
            reasoning="Falta reparar la acera.",
            decided_at=RECEIVED,
        ),
    )
    assert "se revoca la decisión recurrida" in revoked.text
    assert "nueva fecha límite" in revoked.text and "apelación ante el superior" not in revoked.text
