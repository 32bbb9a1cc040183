"""The fleet journal: runs, rollout groups, site runs, previews, events, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("desired", sa.String(16), nullable=False),
        sa.Column("stacks", sa.JSON, nullable=False),
        sa.Column("strategy", sa.JSON, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("context", sa.JSON, nullable=True),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("heartbeat", sa.Float, nullable=True),
    )
    op.create_table(
        "rollout_groups",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("stacks", sa.JSON, nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("approved_by", sa.String(200), nullable=True),
        sa.Column("approved_at", sa.Float, nullable=True),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("soak_until", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
    )
    op.create_table(
        "site_runs",
        sa.Column("id", sa.String(300), primary_key=True),
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("group_name", sa.String(200), nullable=True),
        sa.Column("stack", sa.String(200), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("queued_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("preview_seconds", sa.Float, nullable=True),
        sa.Column("update_seconds", sa.Float, nullable=True),
        sa.Column("health_seconds", sa.Float, nullable=True),
        sa.Column("changes", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_site_runs_stack", "site_runs", ["stack"])
    op.create_index("ix_site_runs_run", "site_runs", ["run_id"])
    op.create_table(
        "previews",
        sa.Column("site_run_id", sa.String(300), sa.ForeignKey("site_runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("stack", sa.String(200), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("advisories", sa.JSON, nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("run_id", sa.String(32), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("stack", sa.String(200), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target", sa.String(300), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_at", "audit", ["at"])


def downgrade() -> None:
    for table in ("audit", "events", "previews", "site_runs", "rollout_groups", "runs"):
        op.drop_table(table)
