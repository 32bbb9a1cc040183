"""`edgefm worker` and `edgefm db ...`: run fleet jobs from the queue; start and stop the embedded database."""

from __future__ import annotations

from typing import Annotated

import typer

from edgefm.cli.console import err, out
from edgefm.ops.database import DatabaseError, database_url, embedded

db_app = typer.Typer(no_args_is_help=True, add_completion=False, help="The journal and queue database on one machine.")

Database = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="EDGEFM_DATABASE_URL",
        help="PostgreSQL URL shared by all workers (default: the embedded server, started if needed).",
    ),
]


def worker(
    database: Database = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", "-c", min=1, help="Jobs at once (default: cores + 1: a rollout's controller is a job too)."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Worker name (default: host:pid).")] = None,
) -> None:
    """Run site operations and rollout controllers from the queue until SIGINT or SIGTERM. Run it on any number of
    machines that share the database and the state backend; one job per stack runs at a time."""
    from edgefm.ops.local import default_parallelism
    from edgefm.ops.queue import run_worker
    from edgefm.ops.siteops import restore_default_signals

    restore_default_signals()
    try:
        url = database_url(database)
    except DatabaseError as exc:
        err.print(str(exc))
        raise typer.Exit(2) from None
    if not url.startswith("postgresql"):
        err.print(f"the job queue needs PostgreSQL; --database is {url.split(':', 1)[0]}")
        raise typer.Exit(2)
    out.print(f"worker on {url.split('@')[-1]}")
    run_worker(url, concurrency or default_parallelism() + 1, name)


@db_app.command("start")
def db_start() -> None:
    """Start the embedded PostgreSQL (first time: create it) and print its URL."""
    try:
        out.print(embedded().start())
    except DatabaseError as exc:
        err.print(str(exc))
        raise typer.Exit(2) from None


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL."""
    embedded().stop()


@db_app.command("url")
def db_url() -> None:
    """Print the embedded server's URL (whether or not it runs)."""
    out.print(embedded().url)
