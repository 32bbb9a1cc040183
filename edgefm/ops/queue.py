"""Site operations as jobs on Procrastinate (PostgreSQL): `edgefm worker` runs them on any number of machines
that share the database and the state backend.

- `edgefm.site`: one operation on one stack, with the Procrastinate lock `stack:<name>`, so at most one job
  runs per stack at a time; a second one waits in the queue until the first has finished. Each runs in a fresh
  process of the worker's pool (see `edgefm.ops.local`) and writes its outcome to the journal itself.
- `edgefm.rollout`: a rollout's controller (`edgefm.ops.controller`), with the lock and queueing lock
  `rollout:<id>`, so one controller drives a rollout however often it is (re)started.

Procrastinate was chosen because the journal is already in PostgreSQL: the queue is a few tables beside it, with
locks and a worker, and nothing else to run (no broker).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import procrastinate
from procrastinate import App, Blueprint, PsycopgConnector

from edgefm.ops.controller import Controller, SiteOutcome, SiteTask, site_outcome_rows
from edgefm.ops.database import conninfo
from edgefm.ops.journal import FAILED, SUCCEEDED, Batch, Journal
from edgefm.ops.siteops import SiteContext, restore_default_signals, run_site

SITE_TASK = "edgefm.site"
ROLLOUT_TASK = "edgefm.rollout"
QUEUE = "edgefm"

blueprint = Blueprint()


def make_app(url: str) -> App:
    """The Procrastinate app on the journal's PostgreSQL database (`postgresql+psycopg://…`)."""
    if not url.startswith("postgresql"):
        raise ValueError(f"the job queue needs PostgreSQL, not {url.split(':', 1)[0]}")
    app = App(connector=PsycopgConnector(conninfo=conninfo(url)))
    app.add_tasks_from(blueprint, namespace="edgefm")
    return app


def ensure_schema(app: App) -> None:
    """Creates Procrastinate's tables the first time (its schema has no IF NOT EXISTS)."""
    with app.open():
        row = app.connector.get_sync_connector().execute_query_one(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present"
        )
        if not row["present"]:
            app.schema_manager.apply_schema()


def context_dict(ctx: SiteContext) -> dict[str, Any]:
    return {
        "repo": str(ctx.repo),
        "render_root": str(ctx.render_root) if ctx.render_root else None,
        "backend_url": ctx.backend_url,
        "extra_env": dict(ctx.extra_env),
    }


def context_of(raw: dict[str, Any]) -> SiteContext:
    return SiteContext(
        repo=Path(raw["repo"]),
        render_root=Path(raw["render_root"]) if raw.get("render_root") else None,
        backend_url=raw.get("backend_url"),
        # The passphrase is never queued or journaled: each worker has it in its environment.
        passphrase=os.environ.get("EDGEFM_CONFIG_PASSPHRASE"),
        extra_env=raw.get("extra_env") or {},
    )


def defer_site(app: App, task: SiteTask, ctx: dict[str, Any]) -> None:
    app.configure_task(f"edgefm:{SITE_TASK}", lock=f"stack:{task.stack}", queue=QUEUE).defer(
        task=asdict(task), context=ctx
    )


def defer_rollout(app: App, run_id: str) -> bool:
    """Queues the rollout's controller; False when one is already queued for it."""
    try:
        app.configure_task(
            f"edgefm:{ROLLOUT_TASK}", lock=f"rollout:{run_id}", queueing_lock=f"rollout:{run_id}", queue=QUEUE
        ).defer(run_id=run_id)
    except procrastinate.exceptions.AlreadyEnqueued:
        return False
    return True


SITE_RUNNER_ENV = "EDGEFM_SITE_RUNNER"


def site_runner() -> Any:
    """What runs a site task: `edgefm.ops.siteops.run_site`, or for drills and tests of the queue itself a
    function named `module:function` in $EDGEFM_SITE_RUNNER (same signature, importable by the worker)."""
    name = os.environ.get(SITE_RUNNER_ENV)
    if not name:
        return run_site
    module, _, function = name.partition(":")
    import importlib

    return getattr(importlib.import_module(module), function)


class _Worker:
    """What a worker process shares between its jobs: the journal, the app, the process pool."""

    lock = threading.Lock()
    instance: _Worker | None = None

    def __init__(self, url: str, app: App, concurrency: int, name: str | None = None) -> None:
        from edgefm.ops.local import LocalExecutor

        self.journal = Journal(url, migrate=False)
        self.app = app
        self.pool = LocalExecutor(SiteContext(repo=Path(".")), concurrency)._pool
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.runner = site_runner()


def _worker() -> _Worker:
    if _Worker.instance is None:
        raise RuntimeError("edgefm jobs run inside `edgefm worker`")
    return _Worker.instance


@blueprint.task(name=SITE_TASK)
def site_job(task: dict[str, Any], context: dict[str, Any]) -> None:
    worker = _worker()
    site = SiteTask(**task)
    start = Batch(site_updates=[{"k_id": site.site_run_id, "started_at": time.time(), "worker": worker.name}])
    start.event(
        site.run_id,
        "site.running",
        f"{site.stack}: {site.operation} running on {worker.name}",
        stack=site.stack,
        data={"worker": worker.name},
        trusted=True,
    )
    worker.journal.write(start)
    try:
        outcome = worker.pool.submit(worker.runner, site, context_of(context)).result()
    except Exception as exc:  # the process running the site died: the site has failed, the worker goes on
        outcome = SiteOutcome(ok=False, phase="worker", error=f"worker process: {exc!r}", finished_at=time.time())
    outcome.worker = worker.name
    batch = Batch()
    site_outcome_rows(site, outcome, batch)
    worker.journal.write(batch, settle_run=site.run_id if site.group is None else None)


@blueprint.task(name=ROLLOUT_TASK)
def rollout_job(run_id: str) -> None:
    worker = _worker()
    Controller(worker.journal, run_id, QueueExecutor(worker.app, worker.journal, run_id)).run()


class QueueExecutor:
    """The controller's executor on the queue: site jobs are deferred, their outcomes read from the journal."""

    records_results = True

    def __init__(self, app: App, journal: Journal, run_id: str, poll: float = 0.5) -> None:
        self.app, self.journal, self.poll = app, journal, poll
        run = journal.run(run_id)
        self.context = (run.context if run is not None else None) or {}
        self._tasks: dict[str, SiteTask] = {}

    def submit(self, task: SiteTask) -> None:
        self._tasks[task.site_run_id] = task
        defer_site(self.app, task, self.context)

    def wait(self, timeout: float) -> list[tuple[SiteTask, SiteOutcome]]:
        deadline = time.monotonic() + timeout
        while True:
            done = self.journal.finished_site_runs(list(self._tasks))
            if done or time.monotonic() >= deadline:
                return [(self._tasks.pop(row.id), _outcome(row)) for row in done]
            time.sleep(min(self.poll, max(0.0, deadline - time.monotonic())))

    def running(self) -> int:
        return len(self._tasks)


def _outcome(row: Any) -> SiteOutcome:
    return SiteOutcome(
        ok=row.state == SUCCEEDED,
        phase=row.phase,
        error=row.error,
        changes=row.changes or {},
        started_at=row.started_at or 0.0,
        finished_at=row.finished_at or 0.0,
        preview_seconds=row.preview_seconds,
        update_seconds=row.update_seconds,
        health_seconds=row.health_seconds,
        worker=row.worker,
    )


def run_worker(url: str, concurrency: int, name: str | None = None) -> None:
    """Runs jobs until SIGINT/SIGTERM: `concurrency` jobs at a time, each site in its own process."""
    restore_default_signals()
    app = make_app(url)
    ensure_schema(app)
    Journal(url).close()  # brings the journal's schema up to date once, before any job writes to it
    with _Worker.lock:
        _Worker.instance = _Worker(url, app, concurrency, name)
    with app.open():
        app.run_worker(
            queues=[QUEUE], concurrency=concurrency, name=name or _Worker.instance.name, delete_jobs="successful"
        )


__all__ = ["FAILED", "QueueExecutor", "defer_rollout", "defer_site", "ensure_schema", "make_app", "run_worker"]
