"""recursos against a decision: reconsideración and apelación, with their own clock

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recourse", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("recourse_filed_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("recourse_due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reconsidered_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        for column in ("reconsidered_at", "recourse_due_at", "recourse_filed_at", "recourse"):
            batch_op.drop_column(column)
