"""Issuing the citizen's clave again at the front desk (after checking the person's identity).

The old clave stops working at once; the new one is returned to be shown to staff once and
only its hash is stored. The audit row names who issued it, never the clave.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from shared.cases.audit import record_note
from shared.db.models import CaseRow
from shared.domain.citizen_key import hash_key, new_key
from shared.uow import UnitOfWork

KEY_ISSUED = "citizen_key_issued"


async def issue_key(uow: UnitOfWork, case: CaseRow, *, actor: str, now: datetime) -> str:
    """A new clave for ``case`` (locked by the caller), in the caller's transaction."""
    key = new_key()
    case.clave_hash = await asyncio.to_thread(hash_key, key)
    case.updated_at = now
    record_note(uow, case, actor=actor, action=KEY_ISSUED, now=now, details={})
    return key
