"""The receipt e-mail's clave link (shared/domain/key_link.py, shared/key_links.py) and the
receipt it goes in (the planner, the delivery's signing, the templates), without I/O but
the secret file of the embedded default."""

from __future__ import annotations

import hmac
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from services.notifier.delivery import with_clave_url
from services.notifier.planning import CaseFacts, Planner
from services.notifier.templates import TemplateRenderer
from shared.config import InstitutionConfig
from shared.contract import CaseReceived
from shared.domain import key_link
from shared.domain.citizen_key import hash_key, new_key
from shared.domain.key_link import KeyLinks, LinkState, authentic, binding_of, check, sign
from shared.key_links import (
    SECRET_FILE_SUFFIX,
    KeyLinkSettings,
    key_link_problems,
    load_key_links,
)
from shared.settings import Settings
from shared.tracking import new_tracking_code

SECRET = b"s" * 32
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
CODE = new_tracking_code(2026)
OTHER = new_tracking_code(2026)
BINDING = binding_of("scrypt$16384$8$1$c2FsdA$ZGlnZXN0")
LATER = NOW + timedelta(days=30)


def token(code: str = CODE, binding: str = BINDING, expires: datetime = LATER) -> str:
    return sign(SECRET, code, binding, expires)


def test_a_link_made_for_a_case_is_valid_until_it_expires() -> None:
    assert check(SECRET, CODE, token(), BINDING, NOW) is LinkState.VALID
    assert check(SECRET, CODE, token(), BINDING, LATER) is LinkState.VALID
    assert check(SECRET, CODE, token(), BINDING, LATER + timedelta(seconds=1)) is (
        LinkState.EXPIRED
    )


def test_a_link_for_another_case_is_forged() -> None:
    assert check(SECRET, OTHER, token(), BINDING, NOW) is LinkState.FORGED


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # the MAC
        lambda t: str(int(t.split(".")[0]) + 86400) + t[t.index(".") :],  # a later expiry
        lambda t: t.replace(BINDING, binding_of("otro")),  # another binding
        lambda t: t.rsplit(".", 1)[0],  # no MAC
        lambda t: t + "=",
        lambda t: "",
        lambda t: "..",
        lambda t: "abc.def.ghi",
        lambda t: t + "x" * 300,
        lambda t: t.replace(".", "．", 1),  # a look-alike dot
    ],
)
def test_a_tampered_token_is_forged(tamper) -> None:  # type: ignore[no-untyped-def]
    assert check(SECRET, CODE, tamper(token()), BINDING, NOW) is LinkState.FORGED
    assert not authentic(SECRET, CODE, tamper(token()))


def test_a_token_made_with_another_secret_is_forged() -> None:
    other = sign(b"t" * 32, CODE, BINDING, LATER)
    assert check(SECRET, CODE, other, BINDING, NOW) is LinkState.FORGED


def test_a_link_dies_once_a_new_clave_is_issued() -> None:
    first = hash_key(new_key())
    link = sign(SECRET, CODE, binding_of(first), LATER)
    assert check(SECRET, CODE, link, binding_of(first), NOW) is LinkState.VALID
    # The same clave hashed again has a new salt: every issue ends the link.
    reissued = hash_key(new_key())
    assert check(SECRET, CODE, link, binding_of(reissued), NOW) is LinkState.USED
    # A case filed without a clave (front desk, 311) has a link to its first one.
    none = sign(SECRET, CODE, binding_of(None), LATER)
    assert check(SECRET, CODE, none, binding_of(None), NOW) is LinkState.VALID
    assert check(SECRET, CODE, none, binding_of(first), NOW) is LinkState.USED


def test_macs_and_bindings_are_compared_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr("shared.domain.key_link.hmac.compare_digest", spy)
    link = token()
    assert check(SECRET, CODE, link, BINDING, NOW) is LinkState.VALID
    mac = link.rsplit(".", 1)[1].encode()
    assert (mac, mac) in compared  # the MAC, through compare_digest, never ==
    assert (BINDING.encode(), BINDING.encode()) in compared


def test_the_token_is_url_safe_and_names_no_clave() -> None:
    clave = new_key()
    links = KeyLinks(SECRET, timedelta(days=30))
    url = links.url("https://d311.example/", CODE, binding_of(hash_key(clave)), LATER)
    parts = urlsplit(url)
    assert parts.path == f"/clave/{CODE}"
    (value,) = parse_qs(parts.query)["t"]
    assert value == parts.query.removeprefix("t=")  # nothing to escape
    assert clave not in url and clave.replace("-", "") not in url
    assert key_link.expires_of(value) == LATER


# ------------------------------------------------------------------------------ settings


def test_a_short_secret_stops_the_start_with_one_spanish_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEFENSA311_CLAVE_LINK_SECRET", "corto-secreto")
    (problem,) = key_link_problems(Settings())
    assert problem.startswith("DEFENSA311_CLAVE_LINK_SECRET: debe tener al menos 32 caracteres")
    assert "corto-secreto" not in problem
    monkeypatch.setenv("DEFENSA311_CLAVE_LINK_SECRET", "x" * 32)
    assert key_link_problems(Settings()) == []
    monkeypatch.setenv("DEFENSA311_CLAVE_LINK_DAYS", "0")
    (days,) = key_link_problems(Settings())
    assert days.startswith("DEFENSA311_CLAVE_LINK_DAYS: debe ser un número entero")


def test_the_configured_secret_and_days_sign_the_links() -> None:
    links = load_key_links(
        Settings(database_url="postgresql://db/x"),
        KeyLinkSettings(clave_link_secret="k" * 32, clave_link_days=10),
    )
    assert links == KeyLinks(b"k" * 32, timedelta(days=10))


def test_without_a_secret_postgresql_makes_no_links() -> None:
    assert load_key_links(Settings(database_url="postgresql://db/x"), KeyLinkSettings()) is None


def test_the_embedded_default_keeps_a_generated_secret_beside_its_database(
    tmp_path: Path,
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/d.db")
    first = load_key_links(settings, KeyLinkSettings())
    again = load_key_links(settings, KeyLinkSettings())
    assert first is not None and again is not None
    assert first.secret == again.secret and len(first.secret) >= 32
    assert first.lifetime == timedelta(days=30)
    stored = tmp_path / f"d.db{SECRET_FILE_SUFFIX}"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [stored.name]  # no temporary left
    stored.write_text("cortado\n")  # an unusable file is replaced
    replaced = load_key_links(settings, KeyLinkSettings())
    assert replaced is not None and len(replaced.secret) >= 32
    memory = load_key_links(Settings(database_url="sqlite://"), KeyLinkSettings())
    assert memory is not None and len(memory.secret) >= 32


# ------------------------------------------------------------------------------ the receipt

CONFIG = InstitutionConfig.model_validate(
    {"institution": {"name": "Alcaldía", "public_url": "https://d311.example/"}}
)


def receipt_context(lifetime: timedelta | None, clave_hash: str | None) -> dict[str, object]:
    event = CaseReceived(
        case_id=uuid.uuid4(), tracking_code=CODE, channel="web", received_at=NOW, due_at=LATER
    )
    case = CaseFacts(
        tracking_code=CODE,
        kind="queja",
        category=None,
        received_at=NOW,
        due_at=LATER,
        citizen_name="Ana",
        notify={"email": "ana@example.com"},
        clave_binding=binding_of(clave_hash),
    )
    plan = Planner(CONFIG, sms_gateway=False, clave_link_lifetime=lifetime).plan(event, case)
    (planned,) = plan.notifications
    return planned.context


def test_the_receipt_e_mail_carries_a_signed_link_and_no_clave() -> None:
    clave = new_key()
    stored = hash_key(clave)
    lifetime = timedelta(days=30)
    context = receipt_context(lifetime, stored)
    # What is stored to send later: what the link is made of, never its token.
    assert context["clave_link"] == {"expires_at": LATER.isoformat(), "binding": binding_of(stored)}
    links = KeyLinks(SECRET, lifetime)
    message = TemplateRenderer().render("case_received", with_clave_url(context, links))
    for part in (message.text, message.html):
        assert f"https://d311.example/clave/{CODE}?t=" in part
        assert "2 de abril de 2026" not in part and "1 de abril de 2026" in part
        assert clave not in part and clave.replace("-", "") not in part
    (url,) = {
        word for word in message.text.split() if word.startswith("https://d311.example/clave/")
    }
    (value,) = parse_qs(urlsplit(url).query)["t"]
    assert links.check(CODE, value, binding_of(stored), NOW) is LinkState.VALID


def test_without_links_the_receipt_says_where_to_get_a_clave() -> None:
    context = receipt_context(None, None)
    assert "clave_link" not in context
    message = TemplateRenderer().render("case_received", with_clave_url(context, None))
    assert "/clave/" not in message.text and "/clave/" not in message.html
    assert "pida una nueva en el Departamento con su documento de identidad" in message.text
    # A stored receipt with a link's parts, sent by a process without the secret: no link.
    parts = receipt_context(timedelta(days=30), None)
    assert with_clave_url(parts, None) == parts
