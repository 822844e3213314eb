"""Every table of the system, for Alembic and for tests that compare models and migrations."""

from __future__ import annotations

from sqlalchemy import MetaData


def metadata() -> MetaData:
    # Service tables register on the shared Base when their module is imported.
    import services.deadlines.models
    import services.intake.models
    import services.notifier.models
    import shared.evidence
    from shared.db.models import Base

    del services, shared
    return Base.metadata
