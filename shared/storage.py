"""Where attachments' bytes live: one interface, a local folder or S3-compatible object storage.

``DEFENSA311_STORAGE_BACKEND`` is ``local`` (the embedded default: ``DEFENSA311_STORAGE_DIR``)
or ``s3`` (``DEFENSA311_STORAGE_S3_BUCKET``, ``…_S3_ENDPOINT_URL`` for a non-AWS service such as
MinIO, ``…_S3_REGION``; credentials the usual AWS way). A link to an object expires: S3 signs it
itself; the local folder's links point at intake (``/adjuntos/<key>``) and carry an HMAC made
with ``DEFENSA311_STORAGE_SECRET`` (its own secret; random per process when unset).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlencode

from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
LINK_PATH = "/adjuntos/"


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEFENSA311_", extra="ignore")

    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path = Path("var/adjuntos")
    storage_secret: str = ""
    storage_s3_bucket: str = "defensa311-adjuntos"
    storage_s3_endpoint_url: str | None = None
    storage_s3_region: str = "us-east-1"
    # How long the links a department receives with a remitted case keep working.
    storage_link_days: float = 7.0


class ObjectMissing(LookupError):
    """No object under that key."""


class BlobStore(Protocol):
    """Bytes by key. Keys are ``[A-Za-z0-9._-]`` segments joined by ``/``."""

    async def put(self, key: str, data: bytes, media_type: str) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...

    async def link(self, key: str, expires_in: timedelta, now: datetime) -> str:
        """A URL that serves the object until ``now + expires_in`` and not after."""
        ...


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key) or ".." in key or len(key) > 300:
        raise ValueError("clave de objeto no válida")
    return key


class LocalFolderStore:
    """Objects as files under one folder; links signed for intake's ``/adjuntos/`` route."""

    def __init__(self, folder: Path, *, base_url: str, secret: str = "") -> None:
        self.folder = folder
        self.base_url = base_url.rstrip("/")
        self._key = (secret or secrets.token_hex(32)).encode()

    def _path(self, key: str) -> Path:
        return self.folder / check_key(key)

    async def put(self, key: str, data: bytes, media_type: str) -> None:
        path = self._path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.name + ".tmp")
            temporary.write_bytes(data)
            os.replace(temporary, path)

        await asyncio.to_thread(write)

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    def signature(self, key: str, expires: int) -> str:
        return hmac.new(self._key, f"{key}|{expires}".encode(), hashlib.sha256).hexdigest()

    async def link(self, key: str, expires_in: timedelta, now: datetime) -> str:
        expires = int((now + expires_in).timestamp())
        query = urlencode({"expira": expires, "firma": self.signature(check_key(key), expires)})
        return f"{self.base_url}{LINK_PATH}{key}?{query}"

    def link_valid(self, key: str, expires: str, signature: str, now: datetime) -> bool:
        if not expires.isdigit() or int(expires) < now.timestamp():
            return False
        return hmac.compare_digest(self.signature(key, int(expires)), signature)


class S3Store:
    """Objects in an S3-compatible bucket (boto3; its blocking calls run in a thread)."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> S3Store:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=settings.storage_s3_endpoint_url,
            region_name=settings.storage_s3_region,
        )
        return cls(client, settings.storage_s3_bucket)

    async def put(self, key: str, data: bytes, media_type: str) -> None:
        await asyncio.to_thread(
            self.client.put_object,
            Bucket=self.bucket,
            Key=check_key(key),
            Body=data,
            ContentType=media_type,
        )

    async def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            answer: Any = await asyncio.to_thread(
                self.client.get_object, Bucket=self.bucket, Key=check_key(key)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectMissing(key) from None
            raise
        body: bytes = await asyncio.to_thread(answer["Body"].read)
        return body

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=check_key(key))

    async def link(self, key: str, expires_in: timedelta, now: datetime) -> str:
        # S3 counts the expiry from its own signing time, which is now.
        url: str = await asyncio.to_thread(
            self.client.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": check_key(key)},
            ExpiresIn=max(1, int(expires_in.total_seconds())),
        )
        return url


def make_store(settings: StorageSettings, *, base_url: str) -> BlobStore:
    if settings.storage_backend == "s3":
        return S3Store.from_settings(settings)
    return LocalFolderStore(settings.storage_dir, base_url=base_url, secret=settings.storage_secret)
