"""Attachment storage (issue 19, point 2): one interface, the same tests on the local folder
and on S3 (moto's server, started in-process), including links that expire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from shared.storage import BlobStore, LocalFolderStore, ObjectMissing, S3Store
from tests.support import free_port

NOW = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)
KEY = "casos/0b7c/foto.jpg"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[BlobStore]:
    if request.param == "local":
        yield LocalFolderStore(tmp_path, base_url="http://intake.example", secret="s")
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "prueba")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "prueba")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    bucket = f"adjuntos-{tmp_path.name.lower().replace('_', '-')}"[:60]
    await asyncio.to_thread(client.create_bucket, Bucket=bucket)
    yield S3Store(client, bucket)


async def test_an_object_put_is_got_back_and_deleted(store: BlobStore) -> None:
    await store.put(KEY, b"\xff\xd8\xff bytes", "image/jpeg")
    assert await store.get(KEY) == b"\xff\xd8\xff bytes"
    await store.delete(KEY)
    with pytest.raises(ObjectMissing):
        await store.get(KEY)
    await store.delete(KEY)  # deleting twice is no error


async def test_a_key_that_climbs_out_of_the_store_is_refused(store: BlobStore) -> None:
    for key in ("../fuera", "casos/../../x", "/abs", ""):
        with pytest.raises(ValueError):
            await store.put(key, b"x", "application/pdf")


async def test_an_s3_link_is_a_signed_expiring_url_that_serves_the_object(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "prueba")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "prueba")
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    await asyncio.to_thread(client.create_bucket, Bucket="enlaces")
    store = S3Store(client, "enlaces")
    await store.put(KEY, b"%PDF-1.4 documento", "application/pdf")
    link = await store.link(KEY, timedelta(minutes=10), NOW)
    assert "Signature=" in link and ("Expires=" in link or "X-Amz-Expires=600" in link)
    # (moto serves it; it does not check signatures, so expiry is S3's to enforce)
    async with httpx.AsyncClient() as http:
        assert (await http.get(link)).content == b"%PDF-1.4 documento"


def test_a_local_link_is_valid_until_it_expires_and_only_with_its_signature(
    tmp_path: Path,
) -> None:
    store = LocalFolderStore(tmp_path, base_url="http://intake.example/", secret="s")
    link = asyncio.run(store.link(KEY, timedelta(minutes=10), NOW))
    assert link.startswith(f"http://intake.example/adjuntos/{KEY}?expira=")
    query = dict(part.split("=") for part in link.split("?", 1)[1].split("&"))
    assert store.link_valid(KEY, query["expira"], query["firma"], NOW)
    assert not store.link_valid(KEY, query["expira"], query["firma"], NOW + timedelta(hours=1))
    assert not store.link_valid("casos/otro.jpg", query["expira"], query["firma"], NOW)
    assert not store.link_valid(KEY, query["expira"], "0" * 64, NOW)
