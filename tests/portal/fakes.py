"""An in-memory fleet service that keeps the portal's contract (edgefm.portal.contracts.FleetServiceAPI).

It is what the portal's API and browser tests drive until the fleet operations service is on main: rollouts
run on a background thread through a canary group and label groups, wait for approvals, pause, resume and
abort; every step is an event with a sequence number; engine-like events carry a secret input so the tests
see that the portal redacts it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from edgefm.portal.contracts import Event, PreviewRecord

# A value the fake engine puts into event data and stack outputs; no page may ever show it.
SECRET_VALUE = "s3cr3t-registry-key-9f2c"


class OpsStrategy(BaseModel):
    """The fleet service's strategy document (edgefm.ops.strategy.RolloutStrategy's fields and checks)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel, frozen=True)

    stacks: list[str] = Field(default_factory=list)
    canary: list[str] = Field(min_length=1)
    group_by: str = "wave"
    max_concurrency: int | str = 1
    max_failures: int | str = 0
    min_success_time: float = Field(default=0.0, ge=0)
    progress_deadline: float = Field(default=1800.0, gt=0)
    approve: list[str] = Field(default_factory=list)

    def needs_approval(self, group: str) -> bool:
        return "*" in self.approve or group in self.approve

    def failure_budget(self, sites: int) -> int:
        mf = self.max_failures
        return sites * int(mf[:-1]) // 100 if isinstance(mf, str) else mf


def _now() -> datetime:
    return datetime.now(UTC)


_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass
class Group:
    name: str
    stacks: list[str]
    state: str = "queued"
    approved_by: str | None = None


@dataclass
class Rollout:
    id: str
    strategy: OpsStrategy
    actor: str
    groups: list[Group]
    stacks: list[str]
    created_at: datetime = field(default_factory=_now)
    finished_at: datetime | None = None
    state: str = "running"
    message: str = ""
    failures: dict[str, str] = field(default_factory=dict)
    paused: bool = False
    aborted: bool = False


@dataclass(frozen=True)
class SiteRun:
    id: str
    run_id: str
    stack: str
    operation: str
    state: str
    started_at: datetime | None
    finished_at: datetime | None
    changes: Mapping[str, int]
    error: str | None = None
    drift: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class SiteSummary:
    last_run: SiteRun | None = None
    last_preview: SiteRun | None = None
    advisories: tuple[str, ...] = ()
    drift: tuple[Mapping[str, Any], ...] = ()
    drift_checked_at: datetime | None = None


@dataclass(frozen=True)
class ChangeSite:
    run: SiteRun
    reasons: list[str]
    steps: Sequence[Mapping[str, Any]]
    advisories: list[str]

    @property
    def stack(self) -> str:
        return self.run.stack


@dataclass
class ChangeRun:
    id: str
    actor: str
    change: str
    placement: str
    state: str = "running"
    message: str = ""
    reasons: dict[str, list[str]] = field(default_factory=dict)

    sites: list[ChangeSite] = field(default_factory=list)


def _step(stack: str, kind: str, name: str, keys: list[str]) -> dict[str, Any]:
    return {"urn": f"urn:pulumi:{stack}::edgefm::{kind}::{name}", "type": kind, "op": "update", "keys": keys}


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    target: str
    result: str


def _groups(strategy: OpsStrategy, labels: Mapping[str, Mapping[str, str]]) -> list[Group]:
    canary = [s for s in strategy.canary if s in strategy.stacks]
    rest: dict[str, list[str]] = {}
    for s in strategy.stacks:
        if s not in canary:
            rest.setdefault(labels.get(s, {}).get(strategy.group_by, "unlabelled"), []).append(s)

    def order(v: str) -> tuple[int, float, str]:
        if v == "unlabelled":
            return (2, 0.0, v)
        return (0, float(v), v) if v.replace(".", "", 1).isdigit() else (1, 0.0, v)

    return [Group("canary", canary)] + [
        Group(f"{strategy.group_by}={v}", sorted(rest[v])) for v in sorted(rest, key=order)
    ]


class InMemoryFleetService:
    """Keeps edgefm.ops.service.FleetService's contract: views, event kinds, audit entries and refusals."""

    def __init__(
        self,
        labels: Mapping[str, Mapping[str, str]] | None = None,
        step_s: float = 0.05,
        failing: set[str] | None = None,
        repo: Path | None = None,
    ) -> None:
        self.labels = dict(labels or {})
        self.repo = repo
        # What a drift check of a stack finds (resources as the engine reports them); a test sets it.
        self.drifted: dict[str, list[dict[str, Any]]] = {}
        self._outputs: dict[str, dict[str, Any]] = {}
        self._changes: dict[str, ChangeRun] = {}
        self.step_s = step_s
        self.failing = set(failing or ())
        self._lock = threading.Condition()
        self._events: dict[str, list[Event]] = {}
        self._rollouts: dict[str, Rollout] = {}
        self._runs: dict[str, list[SiteRun]] = {}
        self._previews: dict[str, PreviewRecord] = {}
        self._audit: list[AuditEntry] = []

    # -- journal --------------------------------------------------------------------------------------

    def _emit(
        self, run_id: str, kind: str, stack: str | None, message: str, data: Mapping[str, Any] | None = None
    ) -> None:
        with self._lock:
            events = self._events.setdefault(run_id, [])
            events.append(Event(len(events) + 1, _now(), kind, stack, message, dict(data or {})))
            self._lock.notify_all()

    def events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        with self._lock:
            return [e for e in self._events.get(run_id, []) if e.seq > after_seq]

    def site_runs(self, stack: str) -> Sequence[SiteRun]:
        """Newest first, as the journal answers."""
        with self._lock:
            return list(reversed(self._runs.get(stack, [])))

    def add_run(self, run: SiteRun, preview: PreviewRecord | None = None) -> None:
        with self._lock:
            self._runs.setdefault(run.stack, []).append(run)
            if preview is not None:
                self._previews[run.id] = preview

    def preview_of(self, site_run_id: str) -> PreviewRecord | None:
        with self._lock:
            return self._previews.get(site_run_id)

    def site_summaries(self, stacks: list[str] | None = None) -> dict[str, SiteSummary]:
        """The journal's answer, worked out from each stack's runs (newest by start time)."""
        with self._lock:
            out = {}
            for stack, runs in self._runs.items():
                if stacks is not None and stack not in stacks:
                    continue
                ordered = sorted(runs, key=lambda r: r.started_at or _EPOCH, reverse=True)
                judged = [
                    r for r in ordered if r.operation in ("preview", "update", "check") and r.id in self._previews
                ]
                checks = [r for r in ordered if r.operation in ("drift", "reconcile") and r.state == "succeeded"]
                check = checks[0] if checks else None
                out[stack] = SiteSummary(
                    ordered[0],
                    judged[0] if judged else None,
                    tuple(self._previews[judged[0].id].advisories) if judged else (),
                    check.drift if check is not None and check.operation == "drift" else (),
                    check.finished_at if check is not None else None,
                )
            return out

    def outputs(self, stack: str) -> dict[str, Any] | None:
        with self._lock:
            return self._outputs.get(stack)

    def record_update(self, stack: str, actor: str = "olga") -> None:
        """A finished update of the stack, as if a rollout had run it (outputs recorded)."""
        self._site(f"update-{uuid.uuid4().hex[:8]}", stack, "update", actor)

    def audit(self, actor: str, action: str, target: str, result: str) -> None:
        with self._lock:
            self._audit.append(AuditEntry(_now(), actor, action, target, result))

    def audit_log(self, limit: int = 100) -> Sequence[AuditEntry]:
        with self._lock:
            return list(reversed(self._audit))[:limit]

    # -- one site, as a worker would report it ---------------------------------------------------------

    def _site(self, run_id: str, stack: str, operation: str, actor: str) -> bool:
        started = _now()
        site_run_id = f"{run_id}:{stack}:{operation}"
        self._emit(run_id, "site.started", stack, f"{stack}: {operation} started", {"attempt": 1})
        # Engine step events carry inputs; the registry key is a secret the portal must never show.
        self._emit(
            run_id,
            "site.running",
            stack,
            f"{stack}: planning Secret registry-key",
            {"inputs": {"stringData": {"secretAccessKey": SECRET_VALUE}}, "note": f"token={SECRET_VALUE}"},
        )
        time.sleep(self.step_s)
        ok = stack not in self.failing
        steps = [
            {
                "urn": f"urn:pulumi:{stack}::edgefm::kubernetes:apps/v1:Deployment::triton",
                "type": "kubernetes:apps/v1:Deployment",
                "op": "update",
                "keys": ["spec.template.spec.containers[0].image"],
            },
            {
                "urn": f"urn:pulumi:{stack}::edgefm::kubernetes:core/v1:Secret::registry-key",
                "type": "kubernetes:core/v1:Secret",
                "op": "update",
                "keys": ["stringData"],
            },
        ]
        preview = PreviewRecord(steps, ["[labels-present] Deployment triton has no team label"])
        run = SiteRun(
            site_run_id,
            run_id,
            stack,
            operation,
            "succeeded" if ok else "failed",
            started,
            _now(),
            {"update": 2, "same": 20},
            None if ok else "update: Deployment triton did not become available",
        )
        self.add_run(run, preview)
        if ok and operation == "update":
            with self._lock:
                # A worker masks secret outputs; this one leaves one in, for the portal's own redaction to catch.
                self._outputs[stack] = {
                    "tritonEndpoint": f"http://triton.{stack}.svc:8000",
                    "registrySecretKey": SECRET_VALUE,
                }
        verdict = "ok" if ok else f"failed: {run.error}"
        self._emit(
            run_id,
            "site.succeeded" if ok else "site.failed",
            stack,
            f"{stack}: {verdict}",
            {"changes": dict(run.changes), "operation": operation},
        )
        return ok

    # -- previews -------------------------------------------------------------------------------------

    def start_preview(self, stacks: list[str], actor: str) -> str:
        if not stacks:
            self.audit(actor, "preview.start", "", "refused: no stacks to preview")
            raise ValueError("no stacks to preview")
        run_id = f"preview-{uuid.uuid4().hex[:8]}"
        self._emit(run_id, "run.running", None, f"preview of {len(stacks)} stack(s) by {actor}")

        def work() -> None:
            ok = all([self._site(run_id, s, "preview", actor) for s in stacks])
            self._emit(run_id, "run.succeeded" if ok else "run.failed", None, "preview finished")

        threading.Thread(target=work, daemon=True).start()
        self.audit(actor, "preview.start", run_id, f"queued: {len(stacks)} stack(s)")
        return run_id

    def start_drift(self, stacks: list[str], actor: str) -> str:
        if not stacks:
            self.audit(actor, "drift.start", "", "refused: no stacks to drift")
            raise ValueError("no stacks to drift")
        run_id = f"drift-{uuid.uuid4().hex[:8]}"
        self._emit(run_id, "drift.created", None, f"drift of {len(stacks)} stack(s) by {actor}")

        def work() -> None:
            for stack in stacks:
                self._emit(run_id, "site.started", stack, f"{stack}: drift started")
                time.sleep(self.step_s)
                drift = tuple(self.drifted.get(stack, []))
                at = _now()
                run = SiteRun(f"{run_id}:{stack}:1", run_id, stack, "drift", "succeeded", at, at, {}, None, drift)
                self.add_run(run)
                self._emit(run_id, "site.succeeded", stack, f"{stack}: succeeded", {"drift": list(drift)})
            self._emit(run_id, "run.succeeded", None, f"{len(stacks)} of {len(stacks)} stack(s) succeeded")

        threading.Thread(target=work, daemon=True).start()
        self.audit(actor, "drift.start", run_id, f"queued: {len(stacks)} stack(s)")
        return run_id

    def start_change_preview(self, placement: str, change: str, actor: str) -> str:
        """Affected stacks as `edgefm.ops.affected` finds them; each "previewed" after `step_s`."""
        from edgefm.ops.affected import affected_by_placement

        assert self.repo is not None, "the fake needs the checkout to find the affected stacks"
        run_id = f"change-{uuid.uuid4().hex[:8]}"
        run = ChangeRun(run_id, actor, change, placement)
        with self._lock:
            self._changes[run_id] = run
        self._emit(run_id, "change.created", None, f"change of 0 stack(s) by {actor}")

        def work() -> None:
            assert self.repo is not None
            affected = affected_by_placement(self.repo, placement)
            run.reasons = affected.reasons
            started = _now()
            with self._lock:
                run.sites = [
                    ChangeSite(
                        SiteRun(f"{run_id}:{s}:1", run_id, s, "change-preview", "running", None, None, {}),
                        affected.reasons[s],
                        [],
                        [],
                    )
                    for s in affected.stacks
                ]
            self._emit(run_id, "change.affected", None, f"{len(affected.stacks)} stack(s) affected")
            for i, stack in enumerate(affected.stacks):
                time.sleep(self.step_s)
                steps = [_step(stack, "kubernetes:apps/v1:Deployment", "triton", ["spec.template.spec.containers"])]
                done = SiteRun(
                    f"{run_id}:{stack}:1", run_id, stack, "change-preview", "succeeded", started, _now(), {"update": 1}
                )
                with self._lock:
                    run.sites[i] = ChangeSite(done, affected.reasons[stack], steps, ["[labels-present] advisory"])
                self._emit(run_id, "site.succeeded", stack, f"{stack}: succeeded")
            with self._lock:
                run.state = "succeeded"
                run.message = f"{len(affected.stacks)} of {len(affected.stacks)} stack(s) succeeded"
            self._emit(run_id, "run.succeeded", None, run.message)

        threading.Thread(target=work, daemon=True).start()
        self.audit(actor, "change.preview", run_id, f"queued: {change}")
        return run_id

    def change_preview(self, run_id: str) -> ChangeRun | None:
        with self._lock:
            run = self._changes.get(run_id)
            if run is None:
                return None
            return dataclasses.replace(run, sites=list(run.sites))

    # -- rollouts -------------------------------------------------------------------------------------

    def start_rollout(self, strategy: OpsStrategy, actor: str) -> str:
        rollout_id = f"rollout-{uuid.uuid4().hex[:8]}"
        groups = _groups(strategy, self.labels)
        r = Rollout(rollout_id, strategy, actor, groups, list(strategy.stacks))
        with self._lock:
            self._rollouts[rollout_id] = r
        self._emit(
            rollout_id,
            "rollout.running",
            None,
            f"rollout started by {actor}: " + " → ".join(f"{g.name} ({len(g.stacks)})" for g in groups),
        )
        threading.Thread(target=self._run, args=(r,), daemon=True).start()
        self.audit(actor, "rollout.start", rollout_id, f"queued: {len(r.stacks)} stack(s), {len(groups)} group(s)")
        return rollout_id

    def _wait(self, r: Rollout, until: Any) -> bool:
        with self._lock:
            while not r.aborted and not until():
                self._lock.wait(0.05)
            return not r.aborted

    def _group(self, r: Rollout, g: Group, state: str, message: str) -> None:
        g.state = state
        self._emit(r.id, f"group.{state}", None, message, {"group": g.name})

    def _run(self, r: Rollout) -> None:
        budget = r.strategy.failure_budget(len(r.stacks))
        for i, group in enumerate(r.groups):
            if r.strategy.needs_approval(group.name) and not group.approved_by:
                with self._lock:
                    r.state = "waiting-approval"
                self._group(r, group, "waiting-approval", f"group {group.name} waits for an approval")
                if not self._wait(r, lambda g=group: g.approved_by is not None):
                    break
            with self._lock:
                r.state = "paused" if r.paused else "running"
            self._group(r, group, "running", f"group {group.name}: {', '.join(group.stacks)}")
            for stack in group.stacks:
                if not self._wait(r, lambda: not r.paused):
                    break
                if not self._site(r.id, stack, "update", r.actor):
                    r.failures[stack] = "update failed"
            if r.aborted:
                self._group(r, group, "aborted", f"group {group.name} aborted")
                break
            failed = any(s in r.failures for s in group.stacks)
            self._group(r, group, "failed" if failed else "succeeded", f"group {group.name} done")
            if len(r.failures) > budget:
                for later in r.groups[i + 1 :]:
                    later.state = "held"
                with self._lock:
                    r.state, r.finished_at = "failed", _now()
                    r.message = f"{len(r.failures)} site(s) failed, more than the {budget} allowed"
                self._emit(r.id, "rollout.failed", None, r.message)
                return
        with self._lock:
            r.finished_at = _now()
            r.state = "aborted" if r.aborted else "succeeded"
            r.message = f"rollout {r.state}"
        self._emit(r.id, f"rollout.{r.state}", None, r.message)

    def _get(self, rollout_id: str, actor: str, action: str) -> Rollout:
        r = self._rollouts.get(rollout_id)
        if r is None:
            self.audit(actor, action, rollout_id, "refused: no such rollout")
            raise LookupError(f"no rollout {rollout_id!r}")
        if r.state in ("succeeded", "failed", "aborted"):
            self.audit(actor, action, rollout_id, f"refused: rollout {rollout_id} has ended ({r.state})")
            raise ValueError(f"rollout {rollout_id} has ended ({r.state})")
        return r

    def approve(self, rollout_id: str, actor: str) -> None:
        r = self._get(rollout_id, actor, "rollout.approve")
        with self._lock:
            if actor == r.actor:
                self._audit.append(
                    AuditEntry(
                        _now(),
                        actor,
                        "rollout.approve",
                        rollout_id,
                        f"refused: {actor} started rollout {rollout_id} and cannot approve it",
                    )
                )
                raise PermissionError(f"{actor} started rollout {rollout_id} and cannot approve it")
            waiting = next((g for g in r.groups if g.state == "waiting-approval" and not g.approved_by), None) or next(
                (
                    g
                    for g in r.groups
                    if g.state == "queued" and r.strategy.needs_approval(g.name) and not g.approved_by
                ),
                None,
            )
            if waiting is None:
                raise ValueError(f"no group of rollout {rollout_id} waits for an approval")
            waiting.approved_by = actor
            self._lock.notify_all()
        self._emit(rollout_id, "group.approved", None, f"group {waiting.name} approved by {actor}", {"actor": actor})
        self.audit(actor, "rollout.approve", rollout_id, f"approved group {waiting.name}")

    def _desire(self, rollout_id: str, actor: str, desired: str) -> None:
        r = self._get(
            rollout_id, actor, f"rollout.{ {'paused': 'pause', 'running': 'resume', 'aborted': 'abort'}[desired] }"
        )
        with self._lock:
            if desired == "paused":
                r.paused, r.state = True, "paused"
            elif desired == "running":
                r.paused = False
                r.state = "running"
            else:
                r.aborted = True
            self._lock.notify_all()
        self._emit(
            rollout_id, f"rollout.{desired}-requested", None, f"{desired} requested by {actor}", {"actor": actor}
        )
        self.audit(
            actor,
            f"rollout.{ {'paused': 'pause', 'running': 'resume', 'aborted': 'abort'}[desired] }",
            rollout_id,
            "ok",
        )

    def pause(self, rollout_id: str, actor: str) -> None:
        self._desire(rollout_id, actor, "paused")

    def resume(self, rollout_id: str, actor: str) -> None:
        self._desire(rollout_id, actor, "running")

    def abort(self, rollout_id: str, actor: str) -> None:
        self._desire(rollout_id, actor, "aborted")

    def rollouts(self) -> Sequence[Rollout]:
        with self._lock:
            return list(self._rollouts.values())

    def rollout(self, rollout_id: str) -> Rollout | None:
        return self._rollouts.get(rollout_id)

    def wait_group(self, rollout_id: str, group: str, state: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(g.name == group and g.state == state for g in self._rollouts[rollout_id].groups):
                return
            time.sleep(0.02)
        raise TimeoutError(f"{rollout_id}: group {group} never became {state}")

    def wait_state(self, rollout_id: str, states: set[str], timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self._rollouts[rollout_id]
            if r.state in states:
                return r.state
            time.sleep(0.02)
        raise TimeoutError(f"{rollout_id} stayed {self._rollouts[rollout_id].state}")
