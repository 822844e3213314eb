"""The MIME message the e-mail channel sends: accents survive the trip, the parts parse back,
and a resend of one notification is the same message (its boundary included)."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.header import decode_header, make_header

from services.notifier.channels import EmailChannel, SmtpSettings
from services.notifier.templates import RenderedMessage

MESSAGE = RenderedMessage(
    subject="Su denuncia fue remitida al Departamento de Obras Públicas y Señalización Vial",
    text="Estimada señora Núñez:\n\nSu caso D311-2026-ABCD-EFGH fue remitido.\n",
    html="<p>Estimada señora Núñez:</p><p>Su caso <b>D311-2026-ABCD-EFGH</b> fue remitido.</p>",
)


def build(message_id: str = "notification-7") -> bytes:
    channel = EmailChannel(SmtpSettings())
    return channel.build(
        to="José Núñez <jose@example.com>", message=MESSAGE, message_id=message_id
    ).as_bytes()


def test_the_subject_and_both_parts_read_back_as_written() -> None:
    raw = build()
    assert raw.isascii()
    assert all(len(line) <= 998 for line in raw.splitlines())
    parsed = message_from_bytes(raw, policy=policy.default)
    assert str(make_header(decode_header(parsed["Subject"]))) == MESSAGE.subject
    assert parsed["To"].addresses[0].display_name == "José Núñez"
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None and text.get_content() == MESSAGE.text
    assert html is not None and html.get_content() == MESSAGE.html


def test_a_resend_is_the_same_message_and_another_notification_has_its_own_boundary() -> None:
    first = message_from_bytes(build("notification-7"))
    again = message_from_bytes(build("notification-7"))
    other = message_from_bytes(build("notification-8"))
    assert first.get_boundary() == again.get_boundary() != other.get_boundary()
    boundary = first.get_boundary()
    assert boundary is not None
    encoded_parts = [str(part) for part in first.get_payload()]
    assert all(boundary not in part for part in encoded_parts)
