"""staff lists at volume: an index for each list filter in its order, keyset ties included;
the open cases' texts indexed for the duplicate search

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_STATES = "('received', 'classified', 'inspection', 'remitted', 'on_agenda')"


def upgrade() -> None:
    # GET /api/v1/cases?kind=… and ?channel=…: newest first, the id breaking ties, so a page
    # (and a deep offset, skipped over the index alone) never sorts.
    op.create_index(
        "ix_cases_kind_received_id", "cases", ["kind", sa.text("received_at DESC"), "id"]
    )
    op.create_index(
        "ix_cases_channel_received_id", "cases", ["channel", sa.text("received_at DESC"), "id"]
    )
    # The agenda (sugerencias on the agenda, the one filed first on top) and its total.
    op.create_index(
        "ix_cases_state_kind_received_id", "cases", ["state", "kind", "received_at", "id"]
    )
    # The console's list by state (last change first) and its open cases (most urgent
    # first) page by keyset: the id is part of both orders.
    op.create_index(
        "ix_cases_state_updated_id", "cases", ["state", sa.text("updated_at DESC"), "id"]
    )
    op.drop_index("ix_cases_state_updated", table_name="cases")
    open_only = sa.text(f"state IN {OPEN_STATES}")
    op.create_index(
        "ix_cases_open_due_id",
        "cases",
        ["due_at", "id"],
        postgresql_where=open_only,
        sqlite_where=open_only,
    )
    op.drop_index("ix_cases_open_due", table_name="cases")
    if op.get_bind().dialect.name == "postgresql":
        # The duplicate search on filing: the open, unjoined cases whose description is
        # nearest a new one's (pg_trgm's ``%`` and ``<->`` through GiST, nearest first).
        op.execute(
            "CREATE INDEX ix_cases_open_description_trgm ON cases "
            "USING gist (description gist_trgm_ops(siglen=64)) "
            f"WHERE state IN {OPEN_STATES} AND duplicate_of IS NULL"
        )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_cases_open_description_trgm")
    open_only = sa.text(f"state IN {OPEN_STATES}")
    op.create_index(
        "ix_cases_open_due",
        "cases",
        ["due_at"],
        postgresql_where=open_only,
        sqlite_where=open_only,
    )
    op.drop_index("ix_cases_open_due_id", table_name="cases")
    op.create_index("ix_cases_state_updated", "cases", ["state", sa.text("updated_at DESC")])
    op.drop_index("ix_cases_state_updated_id", table_name="cases")
    op.drop_index("ix_cases_state_kind_received_id", table_name="cases")
    op.drop_index("ix_cases_channel_received_id", table_name="cases")
    op.drop_index("ix_cases_kind_received_id", table_name="cases")
