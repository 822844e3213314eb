"""duplicate searches: the new cases whose duplicate search at filing is still to run

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The router's queue (services/router/duplicate_searches.py): a row per classified case,
    # deleted once its candidates are stored; the loop takes the oldest first.
    op.create_table(
        "duplicate_searches",
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("case_id"),
    )
    op.create_index("ix_duplicate_searches_queued_at", "duplicate_searches", ["queued_at"])


def downgrade() -> None:
    op.drop_index("ix_duplicate_searches_queued_at", table_name="duplicate_searches")
    op.drop_table("duplicate_searches")
