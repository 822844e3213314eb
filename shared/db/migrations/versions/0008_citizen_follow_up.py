"""citizen follow-up: clave hash, reopening, survey, indexed coordinates, joined duplicates

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clave_hash", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("reopen_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("survey_score", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("survey_comment", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("survey_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("lat", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("lon", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("duplicate_of", sa.String(length=36), nullable=True))
        batch_op.create_foreign_key("fk_cases_duplicate_of", "cases", ["duplicate_of"], ["id"])
        batch_op.create_index("ix_cases_lat_lon", ["lat", "lon"], unique=False)
        batch_op.create_index(batch_op.f("ix_cases_duplicate_of"), ["duplicate_of"], unique=False)
    # The coordinates of cases filed before: copied out of the location document.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE cases SET lat = (location::jsonb ->> 'lat')::float, "
            "lon = (location::jsonb ->> 'lon')::float WHERE location IS NOT NULL"
        )
        # Similar-text search among open cases uses trigrams when the extension is there.
        op.execute(
            "DO $$ BEGIN CREATE EXTENSION IF NOT EXISTS pg_trgm; "
            "EXCEPTION WHEN OTHERS THEN NULL; END $$"
        )
    else:
        op.execute(
            "UPDATE cases SET lat = json_extract(location, '$.lat'), "
            "lon = json_extract(location, '$.lon') WHERE location IS NOT NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cases_duplicate_of"))
        batch_op.drop_index("ix_cases_lat_lon")
        batch_op.drop_constraint("fk_cases_duplicate_of", type_="foreignkey")
        for column in (
            "duplicate_of",
            "lon",
            "lat",
            "survey_at",
            "survey_comment",
            "survey_score",
            "reopen_count",
            "clave_hash",
        ):
            batch_op.drop_column(column)
