"""Site runs keep what a portal shows per site: the drift a drift check found and the stack's outputs after an
update (secret outputs masked); an index on (stack, queued_at) serves the newest run per stack for every site
in one query.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("site_runs") as batch:
        batch.add_column(sa.Column("drift", sa.JSON, nullable=True))
        batch.add_column(sa.Column("outputs", sa.JSON, nullable=True))
    # (stack, queued_at) answers everything the stack-only index did, and orders each stack's runs too.
    op.drop_index("ix_site_runs_stack", table_name="site_runs")
    op.create_index("ix_site_runs_stack_queued", "site_runs", ["stack", "queued_at"])


def downgrade() -> None:
    op.drop_index("ix_site_runs_stack_queued", table_name="site_runs")
    op.create_index("ix_site_runs_stack", "site_runs", ["stack"])
    with op.batch_alter_table("site_runs") as batch:
        batch.drop_column("outputs")
        batch.drop_column("drift")
