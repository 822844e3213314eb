"""The API docs load nothing from another host: Swagger UI and ReDoc come with the package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.security_app import intake_app

URL = re.compile(r"""(?:src|href|url)\s*[=:(]\s*['"]?([^'"\s>)]+)""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_page_references_no_external_host(tmp_path: Path, page: str) -> None:
    async with intake_app(tmp_path) as app:
        response = await app.client.get(page)
        assert response.status_code == 200
        html = response.text
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.IGNORECASE), html
        assets = [url for url in URL.findall(html) if url.startswith("/")]
        assert assets, "the page names no assets at all"
        for asset in assets:
            fetched = await app.client.get(asset)
            assert fetched.status_code == 200, asset
            assert len(fetched.content) > 1000, asset


async def test_swagger_ui_does_not_call_the_public_validator(tmp_path: Path) -> None:
    async with intake_app(tmp_path) as app:
        html = (await app.client.get("/docs")).text
        assert '"validatorUrl": null' in html
