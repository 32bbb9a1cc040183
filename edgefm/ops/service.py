"""`FleetService`: what a portal (or any other front end) calls to run fleet operations. Nothing here blocks on
the engine: rollouts and previews are queued as jobs for `edgefm worker`, and everything they do is read back from
the journal.

    service = FleetService("postgresql://edgefm@db.example/edgefm", Path("/srv/edgefm"))
    rollout_id = service.start_rollout(RolloutStrategy(canary=["site-bridge-north"], max_concurrency="25%"), "ana")
    for event in service.events(rollout_id, after_seq=0): ...      # stream; resume after the last seq seen
    service.approve(rollout_id, "ben")                              # a group waiting for approval starts
    service.pause(rollout_id, "ana"); service.resume(rollout_id, "ana"); service.abort(rollout_id, "ana")
    job_id = service.start_preview(["site-bridge-north"], "ana")    # previews on workers, diffs journaled
    service.site_runs("site-bridge-north")                          # every operation on one stack, newest first
    service.audit("ana", "login", "portal", "ok"); service.audit_log(50)

Every operator action (start, approve, pause, resume, abort, preview) is written to the audit table with its
result, refusals included. Errors: `LookupError` for an unknown rollout, `PermissionError` when the starter of a
rollout approves it, `ValueError` for an action the rollout's state does not allow; messages are one line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from edgefm.model.stacks import fleet_stack_names
from edgefm.ops.controller import SiteTask, lease_holder, start_rollout
from edgefm.ops.database import normalise
from edgefm.ops.journal import (
    ABORTED,
    FINAL,
    PAUSED,
    QUEUED,
    RUNNING,
    WAITING_APPROVAL,
    AuditEntry,
    Batch,
    Event,
    Journal,
    SiteRunRow,
)
from edgefm.ops.queue import context_dict, defer_rollout, defer_site, ensure_schema, make_app
from edgefm.ops.rollout import site_labels
from edgefm.ops.siteops import SiteContext
from edgefm.ops.strategy import RolloutStrategy, plan_groups

__all__ = ["AuditEntry", "Event", "FleetService", "GroupView", "RolloutView", "SiteRunView"]


def _when(at: float | None) -> datetime | None:
    return datetime.fromtimestamp(at, UTC) if at is not None else None


@dataclass(frozen=True)
class SiteRunView:
    id: str
    run_id: str
    stack: str
    operation: str
    state: str
    phase: str
    attempt: int
    actor: str
    worker: str
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    preview_seconds: float | None
    update_seconds: float | None
    health_seconds: float | None
    changes: dict[str, int]
    error: str | None


@dataclass(frozen=True)
class GroupView:
    position: int
    name: str
    stacks: list[str]
    state: str
    approved_by: str | None


@dataclass(frozen=True)
class RolloutView:
    id: str
    actor: str
    state: str
    desired: str
    created_at: datetime | None
    finished_at: datetime | None
    message: str
    stacks: list[str]
    strategy: RolloutStrategy | None
    groups: list[GroupView] = field(default_factory=list)
    site_runs: list[SiteRunView] = field(default_factory=list)


def _site_view(row: SiteRunRow) -> SiteRunView:
    return SiteRunView(
        row.id,
        row.run_id,
        row.stack,
        row.operation,
        row.state,
        row.phase,
        row.attempt,
        row.actor,
        row.worker,
        _when(row.queued_at),
        _when(row.started_at),
        _when(row.finished_at),
        row.preview_seconds,
        row.update_seconds,
        row.health_seconds,
        dict(row.changes or {}),
        row.error,
    )


class FleetService:
    """Fleet operations over the journal and the job queue in one PostgreSQL database (see the module doc).

    `render_root` / `backend_url` are handed to the workers with each job (render mode; the state backend,
    e.g. `s3://…`); the passphrase never is: workers read `EDGEFM_CONFIG_PASSPHRASE` from their environment."""

    def __init__(
        self, database_url: str, repo: Path, *, render_root: Path | None = None, backend_url: str | None = None
    ) -> None:
        self.url = normalise(database_url)
        self.repo = repo.resolve()
        self.journal = Journal(self.url)
        self.app = make_app(self.url)
        ensure_schema(self.app)
        self.context = context_dict(SiteContext(self.repo, render_root=render_root, backend_url=backend_url))

    def close(self) -> None:
        self.journal.close()

    # -- rollouts ---------------------------------------------------------------------------------------------

    def start_rollout(self, strategy: RolloutStrategy, actor: str) -> str:
        """Journals the rollout and queues its controller; returns the rollout id at once."""
        stacks = strategy.stacks or fleet_stack_names(self.repo)
        groups = plan_groups(strategy, stacks, site_labels(self.repo, stacks))
        run_id = start_rollout(
            self.journal, strategy, [(g.name, g.stacks) for g in groups], actor, context=self.context
        )
        with self.app.open():
            defer_rollout(self.app, run_id)
        self.journal.audit(actor, "rollout.start", run_id, f"queued: {len(stacks)} stack(s), {len(groups)} group(s)")
        return run_id

    def _run(self, rollout_id: str, actor: str, action: str) -> RolloutView:
        view = self.rollout(rollout_id)
        if view is None:
            self.journal.audit(actor, action, rollout_id, "refused: no such rollout")
            raise LookupError(f"no rollout {rollout_id!r}")
        return view

    def _refuse(self, actor: str, action: str, rollout_id: str, error: Exception) -> Exception:
        self.journal.audit(actor, action, rollout_id, f"refused: {error}")
        return error

    def approve(self, rollout_id: str, actor: str) -> None:
        """Approves the group that waits for an approval (or the next one that will); never by the starter."""
        view = self._run(rollout_id, actor, "rollout.approve")
        if actor == view.actor:
            raise self._refuse(
                actor,
                "rollout.approve",
                rollout_id,
                PermissionError(f"{actor} started rollout {rollout_id} and cannot approve it"),
            )
        if view.state in FINAL:
            raise self._refuse(
                actor, "rollout.approve", rollout_id, ValueError(f"rollout {rollout_id} has ended ({view.state})")
            )
        strategy = view.strategy or RolloutStrategy(canary=["-"])
        waiting = next(
            (
                g
                for g in view.groups
                if g.state == WAITING_APPROVAL
                or (g.state == QUEUED and strategy.needs_approval(g.name) and not g.approved_by)
            ),
            None,
        )
        if waiting is None:
            raise self._refuse(
                actor,
                "rollout.approve",
                rollout_id,
                ValueError(f"no group of rollout {rollout_id} waits for an approval"),
            )
        self.journal.approve_group(rollout_id, waiting.position, actor)
        self.journal.audit(actor, "rollout.approve", rollout_id, f"approved group {waiting.name}")

    def pause(self, rollout_id: str, actor: str) -> None:
        """No new site starts; sites already running finish."""
        self._desire(rollout_id, actor, PAUSED)

    def resume(self, rollout_id: str, actor: str) -> None:
        """Continues a paused rollout, or one whose controller died (it is queued again and checks first)."""
        self._desire(rollout_id, actor, RUNNING)
        if lease_holder(self.journal, rollout_id) is None:
            with self.app.open():
                defer_rollout(self.app, rollout_id)

    def abort(self, rollout_id: str, actor: str) -> None:
        """No new site starts; the rollout ends as aborted once running sites have finished."""
        self._desire(rollout_id, actor, ABORTED)

    def _desire(self, rollout_id: str, actor: str, desired: str) -> None:
        action = {PAUSED: "rollout.pause", RUNNING: "rollout.resume", ABORTED: "rollout.abort"}[desired]
        view = self._run(rollout_id, actor, action)
        if view.state in FINAL:
            raise self._refuse(actor, action, rollout_id, ValueError(f"rollout {rollout_id} has ended ({view.state})"))
        self.journal.set_desired(rollout_id, desired, actor)
        self.journal.audit(actor, action, rollout_id, "ok")

    def rollouts(self, limit: int = 100) -> list[RolloutView]:
        return [self._view(r.id, details=False) for r in self.journal.runs("rollout", limit)]

    def rollout(self, rollout_id: str) -> RolloutView | None:
        run = self.journal.run(rollout_id)
        return self._view(rollout_id) if run is not None and run.kind == "rollout" else None

    def _view(self, run_id: str, details: bool = True) -> RolloutView:
        run = self.journal.run(run_id)
        if run is None:
            raise LookupError(f"no rollout {run_id!r}")
        groups = (
            [GroupView(g.position, g.name, list(g.stacks), g.state, g.approved_by) for g in self.journal.groups(run_id)]
            if details
            else []
        )
        sites = [_site_view(r) for r in self.journal.site_runs(run_id=run_id)] if details else []
        strategy = RolloutStrategy.model_validate(run.strategy) if run.strategy else None
        return RolloutView(
            run.id,
            run.actor,
            run.state,
            run.desired,
            _when(run.created_at),
            _when(run.finished_at),
            run.message,
            list(run.stacks),
            strategy,
            groups,
            sites,
        )

    # -- previews, events, history, audit ---------------------------------------------------------------------

    def start_preview(self, stacks: list[str], actor: str) -> str:
        """Queues a preview of each stack on the workers (diffs and guardrail findings are journaled); returns
        the job id, whose events and site runs show progress."""
        known = set(fleet_stack_names(self.repo))
        unknown = sorted(set(stacks) - known)
        if not stacks or unknown:
            error = ValueError(f"no such stack(s): {', '.join(unknown)}" if unknown else "no stacks to preview")
            raise self._refuse(actor, "preview.start", ",".join(stacks), error)
        run_id = self.journal.create_run("preview", actor, stacks)
        now = time.time()
        batch = Batch(run_updates=[{"k_id": run_id, "state": RUNNING}])
        tasks = []
        for stack in stacks:
            site_run_id = f"{run_id}:{stack}:1"
            batch.site_runs.append(
                {
                    "id": site_run_id,
                    "run_id": run_id,
                    "group_name": None,
                    "stack": stack,
                    "operation": "preview",
                    "state": RUNNING,
                    "phase": "",
                    "attempt": 1,
                    "actor": actor,
                    "worker": "",
                    "queued_at": now,
                }
            )
            tasks.append(SiteTask(run_id, site_run_id, stack, "preview", actor))
        self.journal.write(batch)
        with self.app.open():
            for task in tasks:
                defer_site(self.app, task, self.context)
        self.journal.audit(actor, "preview.start", run_id, f"queued: {len(stacks)} stack(s)")
        return run_id

    def events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """The run's events after `after_seq`, in order (data redacted)."""
        return self.journal.events(run_id, after_seq)

    def site_runs(self, stack: str) -> list[SiteRunView]:
        return [_site_view(r) for r in self.journal.site_runs(stack=stack, limit=500)]

    def audit(self, actor: str, action: str, target: str, result: str) -> None:
        self.journal.audit(actor, action, target, result)

    def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        return self.journal.audit_log(limit)
