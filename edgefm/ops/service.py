"""`FleetService`: what a portal (or any other front end) calls to run fleet operations. Nothing here blocks on
the engine: rollouts and previews are queued as jobs for `edgefm worker`, and everything they do is read back from
the journal.

    service = FleetService("postgresql://edgefm@db.example/edgefm", Path("/srv/edgefm"))
    rollout_id = service.start_rollout(RolloutStrategy(canary=["site-bridge-north"], max_concurrency="25%"), "ana")
    for event in service.events(rollout_id, after_seq=0): ...      # stream; resume after the last seq seen
    service.approve(rollout_id, "ben")                              # a group waiting for approval starts
    service.pause(rollout_id, "ana"); service.resume(rollout_id, "ana"); service.abort(rollout_id, "ana")
    job_id = service.start_preview(["site-bridge-north"], "ana")    # previews on workers, diffs journaled
    job_id = service.start_drift(["site-bridge-north"], "ana")      # drift checks; what drifted is journaled
    run_id = service.start_change_preview(edited_placement, "defaults: model.version=1.2.0", "ana")
    service.change_preview(run_id)                                  # the affected stacks, each with its diff
    service.site_summaries()                                        # every stack's last run, preview, drift
    service.outputs("site-bridge-north")                            # its outputs after the last update
    service.site_runs("site-bridge-north")                          # every operation on one stack, newest first
    service.audit("ana", "login", "portal", "ok"); service.audit_log(50)

Every operator action (start, approve, pause, resume, abort, preview, drift check, change preview) is written to
the audit table with its result, refusals included. Errors: `LookupError` for an unknown rollout,
`PermissionError` when the starter of a rollout approves it, `ValueError` for an action the rollout's state does
not allow (a group approved twice included); messages are one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgefm.model.placement import PLACEMENT_FILE
from edgefm.model.stacks import fleet_stack_names
from edgefm.ops.approval import approve
from edgefm.ops.controller import lease_holder, start_rollout
from edgefm.ops.database import normalise
from edgefm.ops.journal import (
    ABORTED,
    FINAL,
    PAUSED,
    RUNNING,
    AuditEntry,
    Batch,
    Event,
    Journal,
    SiteRunRecord,
    SiteRunRow,
)
from edgefm.ops.queue import (
    context_dict,
    defer_change,
    defer_rollout,
    defer_site,
    ensure_schema,
    make_app,
    queue_site_runs,
)
from edgefm.ops.rollout import site_labels
from edgefm.ops.siteops import SiteContext
from edgefm.ops.strategy import RolloutStrategy, plan_groups

__all__ = [
    "AuditEntry",
    "ChangePreviewView",
    "ChangeSiteView",
    "Event",
    "FleetService",
    "GroupView",
    "RolloutView",
    "SiteRunView",
    "SiteSummaryView",
]

# An edited placement policy travels in the job's arguments and the run's context: keep it a document.
MAX_PLACEMENT_BYTES = 1024 * 1024


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


@dataclass(frozen=True)
class SiteSummaryView:
    """One stack at a glance (see `FleetService.site_summaries`); `drift`: the drifted resources (urn, type,
    op, keys) its newest drift check found, `drift_checked_at` when that check ended (None: never checked)."""

    stack: str
    last_run: SiteRunView | None
    last_preview: SiteRunView | None
    advisories: list[str]
    drift: list[dict[str, Any]]
    drift_checked_at: datetime | None


@dataclass(frozen=True)
class ChangeSiteView:
    """One stack a change affects: why, its preview's site run, and once done its planned steps and findings."""

    run: SiteRunView
    reasons: list[str]
    steps: list[dict[str, Any]]
    advisories: list[str]

    @property
    def stack(self) -> str:
        return self.run.stack


@dataclass(frozen=True)
class ChangePreviewView:
    id: str
    actor: str
    change: str
    placement: str
    state: str
    message: str
    created_at: datetime | None
    finished_at: datetime | None
    sites: list[ChangeSiteView]


def _site_view(row: SiteRunRow | SiteRunRecord) -> SiteRunView:
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

    `render_root` / `backend_url` / `lab_dir` are handed to the workers with each job (render mode; the state
    backend, e.g. `s3://…`; the fleet lab, which only workers on its machine reach); the passphrase never is:
    workers read `EDGEFM_CONFIG_PASSPHRASE` from their environment."""

    def __init__(
        self,
        database_url: str,
        repo: Path,
        *,
        render_root: Path | None = None,
        backend_url: str | None = None,
        lab_dir: Path | None = None,
    ) -> None:
        self.url = normalise(database_url)
        self.repo = repo.resolve()
        self.journal = Journal(self.url)
        self.app = make_app(self.url)
        ensure_schema(self.app)
        ctx = SiteContext(self.repo, render_root=render_root, backend_url=backend_url, lab_dir=lab_dir)
        self.context = context_dict(ctx)

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
        """Approves the group held for an approval (see `edgefm.ops.approval`): never by the rollout's starter,
        never a group approved already; of two approvals at once, one wins and the other is refused."""
        try:
            group = approve(self.journal, rollout_id, actor)
        except (LookupError, PermissionError, ValueError) as exc:
            result = "no such rollout" if isinstance(exc, LookupError) else str(exc)
            self.journal.audit(actor, "rollout.approve", rollout_id, f"refused: {result}")
            raise
        self.journal.audit(actor, "rollout.approve", rollout_id, f"approved group {group}")

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
        return self._start_batch("preview", "preview.start", stacks, actor)

    def start_drift(self, stacks: list[str], actor: str) -> str:
        """Queues a drift check of each stack (a refresh in preview-only mode: nothing changes); what drifted is
        journaled with each site run (`site_summaries`)."""
        return self._start_batch("drift", "drift.start", stacks, actor)

    def _start_batch(self, operation: str, action: str, stacks: list[str], actor: str) -> str:
        known = set(fleet_stack_names(self.repo))
        unknown = sorted(set(stacks) - known)
        if not stacks or unknown:
            error = ValueError(f"no such stack(s): {', '.join(unknown)}" if unknown else f"no stacks to {operation}")
            raise self._refuse(actor, action, ",".join(stacks), error)
        run_id = self.journal.create_run(operation, actor, stacks)
        batch = Batch()
        tasks = queue_site_runs(batch, run_id, stacks, operation, actor)
        self.journal.write(batch)
        with self.app.open():
            for task in tasks:
                defer_site(self.app, task, self.context)
        self.journal.audit(actor, action, run_id, f"queued: {len(stacks)} stack(s)")
        return run_id

    def start_change_preview(self, placement: str, change: str, actor: str) -> str:
        """Queues a preview of a placement policy edit not made yet: a job finds exactly the stacks it affects
        (`edgefm.ops.affected`) and previews each on the real engine with the edited policy in its workspace
        (the checkout is never written). `change` says what was edited, for people. Returns the run id at once;
        the run's events and site runs show progress, `change_preview` the result."""
        if len(placement.encode()) > MAX_PLACEMENT_BYTES:
            error = ValueError(f"the edited placement policy is over {MAX_PLACEMENT_BYTES // 1024} KiB")
            raise self._refuse(actor, "change.preview", change, error)
        context = {**self.context, "overlay": {PLACEMENT_FILE: placement}, "change": change}
        run_id = self.journal.create_run("change", actor, [], context=context)
        with self.app.open():
            defer_change(self.app, run_id)
        self.journal.audit(actor, "change.preview", run_id, f"queued: {change}")
        return run_id

    def change_preview(self, run_id: str) -> ChangePreviewView | None:
        """A change preview as it stands: the edit, its state, and each affected stack's site run and preview."""
        run = self.journal.run(run_id)
        if run is None or run.kind != "change" or run.context is None:
            return None
        sites = []
        for row in sorted(self.journal.site_runs(run_id=run_id), key=lambda r: r.stack):
            preview = self.journal.preview(row.id) if row.state in FINAL else None
            steps = list(preview.steps) if preview is not None else []
            advisories = [str(a) for a in preview.advisories] if preview is not None else []
            sites.append((row, steps, advisories))
        reasons: dict[str, list[str]] = {}
        for event in self.journal.events(run_id):
            if event.kind == "change.affected":
                reasons = {str(k): [str(x) for x in v] for k, v in (event.data.get("reasons") or {}).items()}
        return ChangePreviewView(
            run.id,
            run.actor,
            str(run.context.get("change", "")),
            str((run.context.get("overlay") or {}).get(PLACEMENT_FILE, "")),
            run.state,
            run.message,
            _when(run.created_at),
            _when(run.finished_at),
            [ChangeSiteView(_site_view(r), reasons.get(r.stack, []), st, adv) for r, st, adv in sites],
        )

    def site_summaries(self, stacks: list[str] | None = None) -> dict[str, SiteSummaryView]:
        """Every stack's newest run, newest judged preview with its guardrail findings, and newest drift check,
        read for the whole fleet at once (see `Journal.site_summaries`)."""
        return {
            stack: SiteSummaryView(
                stack,
                _site_view(s.last_run) if s.last_run is not None else None,
                _site_view(s.last_preview) if s.last_preview is not None else None,
                list(s.advisories),
                s.drift,
                _when(s.drift_check.finished_at) if s.drift_check is not None else None,
            )
            for stack, s in self.journal.site_summaries(stacks).items()
        }

    def outputs(self, stack: str) -> dict[str, Any] | None:
        """The stack's outputs after its newest update (secret outputs masked), or None if none was journaled."""
        return self.journal.outputs(stack)

    def events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        """The run's events after `after_seq`, in order (data redacted)."""
        return self.journal.events(run_id, after_seq)

    def site_runs(self, stack: str) -> list[SiteRunView]:
        return [_site_view(r) for r in self.journal.site_runs(stack=stack, limit=500)]

    def audit(self, actor: str, action: str, target: str, result: str) -> None:
        self.journal.audit(actor, action, target, result)

    def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        return self.journal.audit_log(limit)
