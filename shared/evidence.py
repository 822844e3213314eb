"""Attachments to a case: what is accepted, how photos are cleaned, and their table.

Photos (JPEG, PNG, WebP) and PDF, recognised by their first bytes, never by name or declared
type. A photo is decoded and encoded again, turned upright first, so nothing of the original
file survives but the pixels: EXIF (position, device, time) and every other metadata block are
gone; a JPEG thumbnail is made beside it. A PDF is kept as sent. Anything else is refused with
a Spanish error naming the file and the rule. Limits from ``DEFENSA311_ATTACHMENTS_*``.
"""

from __future__ import annotations

import io
import re
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from weakref import WeakKeyDictionary

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Boolean, ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from shared.contract import AttachmentLink, CaseRemittedToDepartment, Event, FieldError
from shared.db.models import Base
from shared.storage import BlobStore
from shared.uow import UnitOfWork

MB = 1024 * 1024
THUMBNAIL_PIXELS = 320
PHOTO_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "application/pdf": "pdf",
}
FIELD = "attachments"


class AttachmentLimits(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEFENSA311_", extra="ignore")

    attachments_max_files: int = Field(default=5, ge=0)
    attachments_max_megabytes: float = Field(default=10.0, gt=0)
    # A photo larger than this many pixels is refused before it is decoded (a "zip bomb").
    attachments_max_pixels: int = Field(default=40_000_000, ge=1)

    @property
    def max_bytes(self) -> int:
        return int(self.attachments_max_megabytes * MB)

    @property
    def max_body_bytes(self) -> int:
        """What a filing with every attachment at its largest may weigh, form included."""
        return self.attachments_max_files * self.max_bytes + MB


def sniff(data: bytes) -> str | None:
    """The media type the content says it is, or ``None``."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    return None


@dataclass(frozen=True)
class Prepared:
    """An accepted file, ready to store."""

    name: str
    media_type: str
    data: bytes
    thumbnail: bytes | None


class AttachmentRefused(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


def safe_name(name: str) -> str:
    """A file name to show staff: no path, no control characters, at most 120 characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    cleaned = "".join(c for c in base if c.isprintable()).strip()
    return cleaned[:120] or "adjunto"


def _refusal(name: str, rule: str, message: str) -> FieldError:
    return FieldError(field=FIELD, rule=rule, message=f"«{name}»: {message}")


def _clean_photo(data: bytes, media_type: str, limits: AttachmentLimits) -> tuple[bytes, bytes]:
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as probe:
            if probe.width * probe.height > limits.attachments_max_pixels:
                raise ValueError("too many pixels")
            probe.load()
            upright = ImageOps.exif_transpose(probe)
    fmt = PHOTO_TYPES[media_type]
    if fmt == "JPEG" and upright.mode not in ("RGB", "L"):
        upright = upright.convert("RGB")
    # A new image from the pixels alone: no info block (EXIF, XMP, ICC, text chunks) survives.
    clean = Image.frombytes(upright.mode, upright.size, upright.tobytes())
    palette = upright.getpalette() if upright.mode == "P" else None
    if palette is not None:
        clean.putpalette(palette)
    out = io.BytesIO()
    clean.save(out, format=fmt, **({"quality": 88} if fmt in ("JPEG", "WEBP") else {}))
    thumb = clean.convert("RGB")
    thumb.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS))
    small = io.BytesIO()
    thumb.save(small, format="JPEG", quality=80)
    return out.getvalue(), small.getvalue()


def prepare(files: list[tuple[str, bytes]], limits: AttachmentLimits) -> list[Prepared]:
    """Check every file and clean the photos; raise :class:`AttachmentRefused` naming each
    refused file (nothing is accepted from a list with a refused file)."""
    errors: list[FieldError] = []
    if len(files) > limits.attachments_max_files:
        errors.append(
            FieldError(
                field=FIELD,
                rule="attachments_count",
                message=f"puede adjuntar como máximo {limits.attachments_max_files} archivos",
            )
        )
    prepared: list[Prepared] = []
    for raw_name, data in files:
        name = safe_name(raw_name)
        if len(data) > limits.max_bytes:
            errors.append(
                _refusal(
                    name,
                    "attachment_size",
                    f"supera el máximo de {limits.attachments_max_megabytes:g} MB por archivo",
                )
            )
            continue
        media_type = sniff(data)
        if media_type is None:
            errors.append(
                _refusal(
                    name,
                    "attachment_type",
                    "tipo de archivo no admitido; adjunte fotos JPEG, PNG o WebP, o un PDF",
                )
            )
            continue
        if media_type == "application/pdf":
            prepared.append(Prepared(name, media_type, data, None))
            continue
        try:
            clean, thumbnail = _clean_photo(data, media_type, limits)
        except Exception:
            # Pillow raises many kinds for a broken or hostile file; all mean "not a photo".
            errors.append(
                _refusal(name, "attachment_image", "la imagen está dañada o es demasiado grande")
            )
            continue
        prepared.append(Prepared(name, media_type, clean, thumbnail))
    if errors:
        raise AttachmentRefused(errors)
    return prepared


# ---------------------------------------------------------------------------- the table


class AttachmentRow(Base):
    __tablename__ = "attachments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    media_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(300))
    thumbnail_key: Mapped[str | None] = mapped_column(String(300))
    # Shown on the public tracking page only when staff say so.
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    source: Mapped[str] = mapped_column(String(16))  # web | open311 | department
    created_at: Mapped[datetime]

    @property
    def is_photo(self) -> bool:
        return self.media_type in PHOTO_TYPES


def keys_for(attachment_id: str, media_type: str) -> tuple[str, str]:
    base = f"adjuntos/{attachment_id}"
    return f"{base}.{EXTENSIONS[media_type]}", f"{base}-miniatura.jpg"


async def store_blobs(
    store: BlobStore, files: list[Prepared], source: str, now: datetime
) -> list[AttachmentRow]:
    """Put the bytes in the store first; the rows (``case_id`` still to set) are added in the
    case's transaction. If that transaction fails, :func:`discard` removes what was put."""
    rows: list[AttachmentRow] = []
    for item in files:
        attachment_id = str(uuid.uuid4())
        key, thumbnail_key = keys_for(attachment_id, item.media_type)
        await store.put(key, item.data, item.media_type)
        if item.thumbnail is not None:
            await store.put(thumbnail_key, item.thumbnail, "image/jpeg")
        rows.append(
            AttachmentRow(
                id=attachment_id,
                case_id="",
                name=item.name,
                media_type=item.media_type,
                size=len(item.data),
                key=key,
                thumbnail_key=thumbnail_key if item.thumbnail is not None else None,
                public=False,
                source=source,
                created_at=now,
            )
        )
    return rows


async def discard(store: BlobStore, rows: list[AttachmentRow]) -> None:
    for row in rows:
        await store.delete(row.key)
        if row.thumbnail_key:
            await store.delete(row.thumbnail_key)


async def of_case(
    uow: UnitOfWork, case_id: str, *, public_only: bool = False
) -> list[AttachmentRow]:
    statement = select(AttachmentRow).where(AttachmentRow.case_id == case_id)
    if public_only:
        statement = statement.where(AttachmentRow.public.is_(True))
    return list(await uow.session.scalars(statement.order_by(AttachmentRow.created_at)))


async def of_cases(uow: UnitOfWork, case_ids: Iterable[str]) -> dict[str, list[AttachmentRow]]:
    """The attachments of several cases in one statement, without flushing the transaction's
    pending changes first: for a consumer's batch, whose handlers never add attachments."""
    found: dict[str, list[AttachmentRow]] = {case_id: [] for case_id in case_ids}
    statement = select(AttachmentRow).where(AttachmentRow.case_id.in_(sorted(found)))
    with uow.session.no_autoflush:
        for row in await uow.session.scalars(statement.order_by(AttachmentRow.created_at)):
            found[row.case_id].append(row)
    return found


class RemitLinks:
    """Puts the case's attachments, as links that expire, on the department's copy of a
    remitted case (``CaseRemittedToDepartment``; the public ``CaseRemitted`` carries none).

    In a consumer's batch the attachments of all its cases are read once, at the first
    remittance: a read per case would flush the batch's pending rows once per case."""

    def __init__(self, store: BlobStore, valid_for: timedelta) -> None:
        self.store = store
        self.valid_for = valid_for
        self._batches: WeakKeyDictionary[UnitOfWork, dict[str, list[AttachmentRow]]] = (
            WeakKeyDictionary()
        )

    async def _attachments(self, uow: UnitOfWork, case_id: str) -> list[AttachmentRow]:
        batch = uow.batch_case_ids
        if case_id not in batch:
            return await of_case(uow, case_id)
        if uow not in self._batches:
            self._batches[uow] = await of_cases(uow, batch)
        return self._batches[uow][case_id]

    async def __call__(self, uow: UnitOfWork, event: Event, now: datetime) -> Event:
        if not isinstance(event, CaseRemittedToDepartment):
            return event
        links = [
            AttachmentLink(
                name=row.name,
                media_type=row.media_type,
                url=await self.store.link(row.key, self.valid_for, now),
                expires_at=now + self.valid_for,
            )
            for row in await self._attachments(uow, str(event.case_id))
        ]
        return event.model_copy(update={"attachments": links}) if links else event
