"""duplicates at filing: the possible duplicates found when a case is filed, with the reason

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One row per (new case, open case it looked like); the primary key serves the console's
    # case page and the inbox's "posible duplicado" flag (both look up by case_id).
    op.create_table(
        "duplicate_candidates",
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("candidate_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["candidate_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("case_id", "candidate_id"),
    )


def downgrade() -> None:
    op.drop_table("duplicate_candidates")
