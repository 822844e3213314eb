"""read side: indexes for keyset pages, the inbox's age, and staff search (pg_trgm + unaccent)

Revision ID: 0004
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_STATES = "('received', 'classified', 'inspection', 'remitted', 'on_agenda')"

# The text staff search reads (the generated column ``search_text``): lower case,
# without accents, every field a case is looked up by. unaccent() is only STABLE (it reads
# a dictionary), so an IMMUTABLE wrapper naming its dictionary is what an index may use.
FOLD_FUNCTION = """
CREATE OR REPLACE FUNCTION d311_fold(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, value)) $$
"""

SEARCH_FUNCTION = """
CREATE OR REPLACE FUNCTION d311_case_search(
    tracking_code text, external_ref text, description text,
    citizen json, notify json, location json
) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT d311_fold(concat_ws(' ',
    tracking_code, external_ref, description,
    citizen ->> 'full_name', citizen ->> 'id_number', citizen ->> 'email', citizen ->> 'phone',
    notify ->> 'email', notify ->> 'phone', notify ->> 'address',
    location ->> 'address', location ->> 'corregimiento', location ->> 'district')) $$
"""

# Stored, so a search's recheck reads the folded text instead of folding every candidate.
SEARCH_COLUMN = (
    "ALTER TABLE cases ADD COLUMN search_text text GENERATED ALWAYS AS "
    "(d311_case_search(tracking_code, external_ref, description, citizen, notify, location)) "
    "STORED"
)
SEARCH_INDEX = "CREATE INDEX ix_cases_search_trgm ON cases USING gin (search_text gin_trgm_ops)"


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    # Lists: newest first with a tie-breaker, alone or within a state or a department.
    op.create_index("ix_cases_received_id", "cases", [sa.text("received_at DESC"), "id"])
    op.create_index(
        "ix_cases_state_received_id", "cases", ["state", sa.text("received_at DESC"), "id"]
    )
    op.create_index(
        "ix_cases_department_received_id",
        "cases",
        ["department", sa.text("received_at DESC"), "id"],
    )
    op.create_index("ix_cases_state_updated", "cases", ["state", sa.text("updated_at DESC")])
    # Open cases are a small share of years of cases: the inbox and the overdue filter
    # read them without walking the closed ones.
    open_only = sa.text(f"state IN {OPEN_STATES}")
    op.create_index(
        "ix_cases_open_due",
        "cases",
        ["due_at"],
        postgresql_where=open_only,
        sqlite_where=open_only,
    )
    op.create_index(
        "ix_cases_open_received_id",
        "cases",
        [sa.text("received_at DESC"), "id"],
        postgresql_where=open_only,
        sqlite_where=open_only,
    )
    # Retention prunes by age.
    op.create_index("ix_inbox_processed_at", "inbox", ["processed_at"])
    if _is_postgresql():
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
        op.execute(FOLD_FUNCTION)
        op.execute(SEARCH_FUNCTION)
        op.execute(SEARCH_COLUMN)
        op.execute(SEARCH_INDEX)


def downgrade() -> None:
    if _is_postgresql():
        op.execute("DROP INDEX IF EXISTS ix_cases_search_trgm")
        op.execute("ALTER TABLE cases DROP COLUMN IF EXISTS search_text")
        op.execute("DROP FUNCTION IF EXISTS d311_case_search(text, text, text, json, json, json)")
        op.execute("DROP FUNCTION IF EXISTS d311_fold(text)")
    op.drop_index("ix_inbox_processed_at", table_name="inbox")
    op.drop_index("ix_cases_open_received_id", table_name="cases")
    op.drop_index("ix_cases_open_due", table_name="cases")
    op.drop_index("ix_cases_state_updated", table_name="cases")
    op.drop_index("ix_cases_department_received_id", table_name="cases")
    op.drop_index("ix_cases_state_received_id", table_name="cases")
    op.drop_index("ix_cases_received_id", table_name="cases")
