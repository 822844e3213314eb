"""Who gets a page and who gets JSON when the HTTP guard refuses a request."""

from __future__ import annotations

import pytest

from services.intake.refusals import wait_text, wants_page


def scope(path: str, accept: str | None) -> dict[str, object]:
    headers = [] if accept is None else [(b"accept", accept.encode())]
    return {"type": "http", "path": path, "headers": headers}


@pytest.mark.parametrize(
    ("path", "accept", "page"),
    [
        ("/presentar", "text/html,application/xhtml+xml,*/*;q=0.8", True),
        ("/presentar", None, True),
        ("/presentar", "*/*", True),
        ("/presentar", "application/json", False),
        ("/seguimiento/2025-7K3-M9Q-XD2", "text/html", True),
        ("/api/v1/cases", "text/html", False),
        ("/open311/v2/requests.json", "text/html", False),
        ("/metrics", None, False),
    ],
)
def test_a_page_path_answers_a_page_unless_json_is_asked_for(
    path: str, accept: str | None, page: bool
) -> None:
    assert wants_page(scope(path, accept)) is page


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "1 segundo"),
        (45, "45 segundos"),
        (60, "1 minuto"),
        (61, "2 minutos"),
        (600, "10 minutos"),
    ],
)
def test_the_wait_is_said_in_whole_units(seconds: int, text: str) -> None:
    assert wait_text(seconds) == text
