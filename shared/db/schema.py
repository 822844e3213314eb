"""Every table of the system, for Alembic and for tests that compare models and migrations.

The shared tables are declared in :mod:`shared.db.models`; each service declares its own in its
``ServiceDefinition.models``, and loading the definitions (as ``run all`` does) registers them
on the shared declarative base.
"""

from __future__ import annotations

from sqlalchemy import MetaData


def metadata() -> MetaData:
    import shared.evidence  # the attachments' table (shared: every door stores them)
    from shared.cli import SERVICES, service_definition
    from shared.db.models import Base

    del shared
    for name in SERVICES:
        for model in service_definition(name).models:
            assert model.metadata is Base.metadata, model
    return Base.metadata
