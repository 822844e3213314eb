"""Files sent with a form (``multipart/form-data``), as every door reads them: the part named
``adjuntos``, each read to one byte past the per-file limit, then checked and cleaned by
:func:`shared.evidence.prepare` (type by content, EXIF removed, limits)."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from starlette.datastructures import FormData

from shared.evidence import AttachmentLimits, Prepared, prepare

#: The form part that carries the files, on every page and on the API.
UPLOADS = "adjuntos"
#: An action body's field that counts the files sent with it; the door sets it, never the
#: caller (:class:`shared.domain.actions.RespondBody`, ``AddInformationBody``).
COUNT_FIELD = "attachments"


def takes_files(body: type[BaseModel]) -> bool:
    """Whether an action's body counts files sent with it (the door then offers a file input)."""
    return COUNT_FIELD in body.model_fields


async def prepared_uploads(form: FormData, limits: AttachmentLimits) -> list[Prepared]:
    """The form's files checked and cleaned; raises :class:`~shared.evidence.AttachmentRefused`
    naming each refused file. The empty part a browser sends when no file was chosen is no file."""
    files: list[tuple[str, bytes]] = []
    for upload in form.getlist(UPLOADS):
        if isinstance(upload, str) or (not upload.filename and not upload.size):
            continue
        files.append((upload.filename or "", await upload.read(limits.max_bytes + 1)))
    if not files:
        return []
    return await asyncio.to_thread(prepare, files, limits)
