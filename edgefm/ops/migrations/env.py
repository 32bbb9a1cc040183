"""Alembic environment for the fleet journal: run by `Journal.migrate()` (the connection is passed in) or by the
`alembic` command with `-x url=...`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from edgefm.ops.journal import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("no database: pass -x url=postgresql+psycopg://... (or sqlite:///file)")
    with create_engine(url).begin() as own:
        context.configure(connection=own, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
