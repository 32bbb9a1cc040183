"""Site operations as jobs on Procrastinate (PostgreSQL): `edgefm worker` runs them on any number of machines
that share the database and the state backend.

- `edgefm.site`: one operation on one stack, with the Procrastinate lock `stack:<name>`, so at most one job
  runs per stack at a time; a second one waits in the queue until the first has finished. Each runs in a fresh
  process of the worker's pool (see `edgefm.ops.local`) and writes its outcome to the journal itself.
- `edgefm.rollout`: a rollout's controller (`edgefm.ops.controller`), with the lock and queueing lock
  `rollout:<id>`, so one controller drives a rollout however often it is (re)started.
- `edgefm.change`: a change previewed before it is made (an edited placement policy): finds the stacks it
  affects (`edgefm.ops.affected`) and queues a preview of each with the edit overlaid in its workspace.

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
from edgefm.ops.journal import FAILED, RUNNING, SUCCEEDED, Batch, Journal
from edgefm.ops.siteops import SiteContext, restore_default_signals, run_site

SITE_TASK = "edgefm.site"
ROLLOUT_TASK = "edgefm.rollout"
CHANGE_TASK = "edgefm.change"
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
        # The fleet lab runs on the machine that started it: only workers there can apply to it.
        "lab_dir": str(ctx.lab_dir) if ctx.lab_dir else None,
        "overlay": dict(ctx.overlay),
    }


def context_of(raw: dict[str, Any]) -> SiteContext:
    return SiteContext(
        repo=Path(raw["repo"]),
        render_root=Path(raw["render_root"]) if raw.get("render_root") else None,
        backend_url=raw.get("backend_url"),
        # The passphrase is never queued or journaled: each worker has it in its environment.
        passphrase=os.environ.get("EDGEFM_CONFIG_PASSPHRASE"),
        extra_env=raw.get("extra_env") or {},
        lab_dir=Path(raw["lab_dir"]) if raw.get("lab_dir") else None,
        overlay=raw.get("overlay") or {},
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


def defer_change(app: App, run_id: str) -> None:
    app.configure_task(f"edgefm:{CHANGE_TASK}", queue=QUEUE).defer(run_id=run_id)


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


@blueprint.task(name=CHANGE_TASK)
def change_job(run_id: str) -> None:
    worker = _worker()
    run_change(worker.journal, worker.app, run_id)


def run_change(journal: Journal, app: App, run_id: str) -> None:
    """Previews exactly the stacks the run's edit affects, each with the edit overlaid; the last site job to
    finish ends the run (as for any batch of site jobs). An edit that affects nothing ends it at once."""
    from edgefm.model.placement import PLACEMENT_FILE
    from edgefm.ops.affected import EditError, affected_by_placement

    run = journal.run(run_id)
    if run is None or run.context is None:
        raise LookupError(f"no change run {run_id!r} in the journal")
    context = run.context
    try:
        affected = affected_by_placement(Path(context["repo"]), context["overlay"][PLACEMENT_FILE])
    except (EditError, OSError) as exc:
        end = Batch(run_updates=[{"k_id": run_id, "state": FAILED, "finished_at": time.time(), "message": str(exc)}])
        end.event(run_id, "run.failed", str(exc), trusted=True)
        journal.write(end)
        return
    stacks = affected.stacks
    batch = Batch()
    batch.event(
        run_id,
        "change.affected",
        f"{len(stacks)} stack(s) affected: {', '.join(stacks) or 'none'}",
        data={"reasons": affected.reasons},
        trusted=True,
    )
    tasks = queue_site_runs(batch, run_id, stacks, "change-preview", run.actor)
    if not tasks:
        message = "the change affects no stack"
        batch.run_updates.append({"k_id": run_id, "state": SUCCEEDED, "finished_at": time.time(), "message": message})
        batch.event(run_id, "run.succeeded", message, trusted=True)
    journal.write(batch)
    for task in tasks:  # inside a worker: its app is open already
        defer_site(app, task, context)


def queue_site_runs(batch: Batch, run_id: str, stacks: list[str], operation: str, actor: str) -> list[SiteTask]:
    """A running batch run's site runs (one per stack), journaled in `batch`; their tasks, to defer once written."""
    now = time.time()
    batch.run_updates.append({"k_id": run_id, "state": RUNNING})
    tasks = []
    for stack in stacks:
        site_run_id = f"{run_id}:{stack}:1"
        batch.site_runs.append(
            {
                "id": site_run_id,
                "run_id": run_id,
                "group_name": None,
                "stack": stack,
                "operation": operation,
                "state": RUNNING,
                "phase": "",
                "attempt": 1,
                "actor": actor,
                "worker": "",
                "queued_at": now,
            }
        )
        tasks.append(SiteTask(run_id, site_run_id, stack, operation, actor))
    return tasks


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


__all__ = [
    "FAILED",
    "QueueExecutor",
    "defer_change",
    "defer_rollout",
    "defer_site",
    "ensure_schema",
    "make_app",
    "queue_site_runs",
    "run_change",
    "run_worker",
]
