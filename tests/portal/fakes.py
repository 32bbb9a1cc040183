"""An in-memory fleet service that keeps the portal's contract (edgefm.portal.contracts.FleetServiceAPI).

It is what the portal's API and browser tests drive until the fleet operations service is on main: rollouts
run on a background thread through a canary group and label groups, wait for approvals, pause, resume and
abort; every step is an event with a sequence number; engine-like events carry a secret input so the tests
see that the portal redacts it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from edgefm.portal.contracts import Event, RefusedError, RolloutStrategy

# A value the fake engine puts into event data and stack outputs; no page may ever show it.
SECRET_VALUE = "s3cr3t-registry-key-9f2c"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Group:
    name: str
    stacks: list[str]
    state: str = "pending"


@dataclass
class Rollout:
    id: str
    strategy: RolloutStrategy
    started_by: str
    groups: list[Group]
    started_at: datetime = field(default_factory=_now)
    finished_at: datetime | None = None
    state: str = "running"
    failures: dict[str, str] = field(default_factory=dict)
    approvals: int = 0
    paused: bool = False
    aborted: bool = False


@dataclass(frozen=True)
class SiteRun:
    run_id: str
    stack: str
    operation: str
    result: str
    started_at: datetime
    finished_at: datetime | None
    changes: Mapping[str, int]
    outputs: Mapping[str, Any]
    diff: Sequence[Mapping[str, Any]]
    findings: Sequence[str]


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    target: str
    result: str


def _groups(strategy: RolloutStrategy, labels: Mapping[str, Mapping[str, str]]) -> list[Group]:
    canary = [s for s in strategy.stacks if labels.get(s, {}).get(strategy.canary_label) == strategy.canary_value]
    rest: dict[str, list[str]] = {}
    for s in strategy.stacks:
        if s not in canary:
            rest.setdefault(labels.get(s, {}).get(strategy.group_by, "unlabelled"), []).append(s)

    def order(v: str) -> tuple[int, float, str]:
        if v == "unlabelled":
            return (2, 0.0, v)
        return (0, float(v), v) if v.replace(".", "", 1).isdigit() else (1, 0.0, v)

    groups = [Group("canary", sorted(canary))] if canary else []
    return groups + [Group(f"{strategy.group_by}={v}", sorted(rest[v])) for v in sorted(rest, key=order)]


class InMemoryFleetService:
    def __init__(
        self,
        labels: Mapping[str, Mapping[str, str]] | None = None,
        step_s: float = 0.05,
        failing: set[str] | None = None,
    ) -> None:
        self.labels = dict(labels or {})
        self.step_s = step_s
        self.failing = set(failing or ())
        self._lock = threading.Condition()
        self._events: dict[str, list[Event]] = {}
        self._rollouts: dict[str, Rollout] = {}
        self._runs: dict[str, list[SiteRun]] = {}
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
        with self._lock:
            return list(self._runs.get(stack, []))

    def add_run(self, run: SiteRun) -> None:
        with self._lock:
            self._runs.setdefault(run.stack, []).append(run)

    def audit(self, actor: str, action: str, target: str, result: str) -> None:
        with self._lock:
            self._audit.append(AuditEntry(_now(), actor, action, target, result))

    def audit_log(self, limit: int) -> Sequence[AuditEntry]:
        with self._lock:
            return list(reversed(self._audit))[:limit]

    # -- one site, as the engine would report it -----------------------------------------------------

    def _site(self, run_id: str, stack: str, operation: str) -> bool:
        started = _now()
        diff = [
            {
                "urn": f"urn:pulumi:{stack}::edgefm::kubernetes:apps/v1:Deployment::triton",
                "op": "update",
                "diffs": ["spec.template.spec.containers[0].image"],
            },
            {
                "urn": f"urn:pulumi:{stack}::edgefm::kubernetes:core/v1:Secret::registry-key",
                "op": "update",
                "diffs": ["stringData"],
            },
        ]
        # Engine step events carry inputs; the registry key is a secret the portal must never show.
        self._emit(
            run_id,
            "resource-pre",
            stack,
            f"{operation} Secret registry-key",
            {"inputs": {"stringData": {"secretAccessKey": SECRET_VALUE}, "note": f"token={SECRET_VALUE}"}},
        )
        time.sleep(self.step_s)
        failed = stack in self.failing
        result = "failed" if failed else "succeeded"
        outputs = {"tritonEndpoint": f"http://triton.{stack}.svc:8000", "registrySecretKey": SECRET_VALUE}
        self.add_run(
            SiteRun(
                run_id,
                stack,
                operation,
                result,
                started,
                _now(),
                {"update": 2, "same": 20},
                outputs if operation == "update" else {},
                diff if operation == "preview" else [],
                ["[labels-present] advisory: Deployment triton has no team label"],
            )
        )
        kind = "site-failed" if failed else "site-succeeded"
        self._emit(run_id, kind, stack, f"{operation} {result}")
        return not failed

    # -- previews -------------------------------------------------------------------------------------

    def start_preview(self, stacks: list[str], actor: str) -> str:
        run_id = f"preview-{uuid.uuid4().hex[:8]}"
        self._emit(run_id, "run-started", None, f"preview of {len(stacks)} stack(s) by {actor}")

        def work() -> None:
            ok = all([self._site(run_id, s, "preview") for s in stacks])
            self._emit(run_id, "run-succeeded" if ok else "run-failed", None, "preview finished")

        threading.Thread(target=work, daemon=True).start()
        return run_id

    # -- rollouts -------------------------------------------------------------------------------------

    def start_rollout(self, strategy: RolloutStrategy, actor: str) -> str:
        rollout_id = f"rollout-{uuid.uuid4().hex[:8]}"
        r = Rollout(rollout_id, strategy, actor, _groups(strategy, self.labels))
        with self._lock:
            self._rollouts[rollout_id] = r
        self._emit(
            rollout_id,
            "run-started",
            None,
            f"rollout started by {actor}: " + " → ".join(f"{g.name} ({len(g.stacks)})" for g in r.groups),
        )
        threading.Thread(target=self._run, args=(r,), daemon=True).start()
        return rollout_id

    def _budget(self, r: Rollout) -> int:
        mf = r.strategy.max_failures
        total = len(r.strategy.stacks)
        return total * int(mf[:-1]) // 100 if mf.endswith("%") else int(mf)

    def _wait(self, r: Rollout, until: Any) -> bool:
        with self._lock:
            while not r.aborted and not until():
                self._lock.wait(0.05)
            return not r.aborted

    def _run(self, r: Rollout) -> None:
        for i, group in enumerate(r.groups):
            if i > 0 and r.strategy.approve_each_group:
                with self._lock:
                    r.state, group.state = "waiting-approval", "waiting-approval"
                self._emit(r.id, "approval-needed", None, f"group {group.name} waits for an approval")
                if not self._wait(r, lambda i=i: r.approvals >= i):
                    break
            group.state = r.state = "running"
            self._emit(r.id, "group-started", None, f"group {group.name}: {', '.join(group.stacks)}")
            for stack in group.stacks:
                if not self._wait(r, lambda: not r.paused):
                    break
                if not self._site(r.id, stack, "preview") or not self._site(r.id, stack, "update"):
                    r.failures[stack] = "update failed"
            if r.aborted:
                group.state = "aborted"
                break
            group.state = "failed" if any(s in r.failures for s in group.stacks) else "succeeded"
            if len(r.failures) > self._budget(r):
                for later in r.groups[i + 1 :]:
                    later.state = "held"
                with self._lock:
                    r.state, r.finished_at = "failed", _now()
                self._emit(
                    r.id, "run-failed", None, f"{len(r.failures)} failure(s) exceed the budget; later groups held"
                )
                return
        with self._lock:
            r.finished_at = _now()
            r.state = "aborted" if r.aborted else "succeeded"
        self._emit(r.id, "run-aborted" if r.aborted else "run-succeeded", None, f"rollout {r.state}")

    def _get(self, rollout_id: str) -> Rollout:
        r = self._rollouts.get(rollout_id)
        if r is None:
            raise RefusedError(f"no rollout {rollout_id}")
        return r

    def approve(self, rollout_id: str, actor: str) -> None:
        r = self._get(rollout_id)
        with self._lock:
            if actor == r.started_by:
                raise RefusedError(f"{actor} started {rollout_id} and cannot approve it")
            if r.state != "waiting-approval":
                raise RefusedError(f"{rollout_id} is {r.state}, not waiting for an approval")
            r.approvals += 1
            self._lock.notify_all()
        self._emit(rollout_id, "approved", None, f"approved by {actor}")

    def pause(self, rollout_id: str, actor: str) -> None:
        r = self._get(rollout_id)
        with self._lock:
            if r.state in ("succeeded", "failed", "aborted"):
                raise RefusedError(f"{rollout_id} has finished")
            r.paused, r.state = True, "paused"
        self._emit(rollout_id, "paused", None, f"paused by {actor}")

    def resume(self, rollout_id: str, actor: str) -> None:
        r = self._get(rollout_id)
        with self._lock:
            if not r.paused:
                raise RefusedError(f"{rollout_id} is not paused")
            r.paused, r.state = False, "running"
            self._lock.notify_all()
        self._emit(rollout_id, "resumed", None, f"resumed by {actor}")

    def abort(self, rollout_id: str, actor: str) -> None:
        r = self._get(rollout_id)
        with self._lock:
            r.aborted = True
            self._lock.notify_all()
        self._emit(rollout_id, "abort-requested", None, f"abort requested by {actor}")

    def rollouts(self) -> Sequence[Rollout]:
        with self._lock:
            return list(self._rollouts.values())

    def rollout(self, rollout_id: str) -> Rollout | None:
        return self._rollouts.get(rollout_id)

    def wait_state(self, rollout_id: str, states: set[str], timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self._rollouts[rollout_id]
            if r.state in states:
                return r.state
            time.sleep(0.02)
        raise TimeoutError(f"{rollout_id} stayed {self._rollouts[rollout_id].state}")
