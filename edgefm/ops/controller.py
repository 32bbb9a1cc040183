"""The rollout controller: drives a rollout's groups through an executor, journaling every step.

It owns no state of its own: everything it decides from is in the journal (the run, its groups, its site runs),
so a controller killed at any point is started again with the same run id and carries on — finished sites are
not touched again, the failure budget counts what already failed, and a site that was mid-update when the
controller died is run again as a *check*: previewed first, and updated only where the preview shows changes.

Each site is one task on the executor (preview → guardrails → update → health gate, see `edgefm.ops.siteops`).
The executor is a process pool on one machine (`edgefm.ops.local`), a queue with workers on many
(`edgefm.ops.queue`), or a simulation (`edgefm.ops.simulate`). The controller reads operator commands (pause,
resume, abort, approvals) from the journal every `command_interval` seconds of wall time.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgefm.ops.journal import (
    ABORTED,
    DRIFT_OPERATIONS,
    FAILED,
    PAUSED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    WAITING_APPROVAL,
    Batch,
    GroupRow,
    Journal,
    SiteRunRow,
    redact,
)
from edgefm.ops.strategy import RolloutStrategy

SOAKING = "soaking"
INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class SiteTask:
    """One operation on one stack. `operation`: update (preview, judge, update, health), check (preview; update
    only if it shows changes; health), preview, drift, reconcile. `deadline` is absolute (clock seconds)."""

    run_id: str
    site_run_id: str
    stack: str
    operation: str
    actor: str
    group: str | None = None
    deadline: float | None = None
    health: dict[str, Any] | None = None


@dataclass
class SiteOutcome:
    """What a site task ended with: `phase` is the last phase reached (preview, guardrails, update, health)."""

    ok: bool
    phase: str
    error: str | None = None
    changes: dict[str, int] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    advisories: list[str] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0
    preview_seconds: float | None = None
    update_seconds: float | None = None
    health_seconds: float | None = None
    worker: str = ""
    drift: list[dict[str, Any]] = field(default_factory=list)
    # The stack's outputs after an update (secret outputs masked); None when the operation updated nothing.
    outputs: dict[str, Any] | None = None
    # In the fleet lab: pods the update left that no node can run, with the scheduler's reason.
    unschedulable: list[str] = field(default_factory=list)
    # A check's recovery of what a killed update left: a stale lock removed, interrupted operations resolved.
    recovered: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SiteOutcome:
        return cls(**raw)


class Executor(Protocol):
    """Runs site tasks somewhere; `wait` returns the tasks finished since the last call (waiting up to
    `timeout` seconds for the first). `records_results`: the executor's workers write each outcome to the
    journal themselves (the queue), so the controller only counts it."""

    records_results: bool

    def submit(self, task: SiteTask) -> None: ...

    def wait(self, timeout: float) -> list[tuple[SiteTask, SiteOutcome]]: ...

    def running(self) -> int: ...


def site_outcome_rows(task: SiteTask, outcome: SiteOutcome, batch: Batch) -> None:
    """The journal rows for a finished site task (written by the controller, or by a queue worker)."""
    batch.site_updates.append(
        {
            "k_id": task.site_run_id,
            "state": SUCCEEDED if outcome.ok else FAILED,
            "phase": outcome.phase,
            "started_at": outcome.started_at,
            "finished_at": outcome.finished_at,
            "preview_seconds": outcome.preview_seconds,
            "update_seconds": outcome.update_seconds,
            "health_seconds": outcome.health_seconds,
            "changes": outcome.changes,
            "error": outcome.error,
            "worker": outcome.worker,
            # Engine values: redacted again, whatever the worker already masked.
            "drift": redact(outcome.drift) if task.operation in DRIFT_OPERATIONS and outcome.ok else None,
            "outputs": redact(outcome.outputs) if outcome.outputs is not None else None,
        }
    )
    if outcome.preview_seconds is not None:
        batch.previews.append(
            {
                "site_run_id": task.site_run_id,
                "stack": task.stack,
                "at": outcome.started_at,
                "steps": outcome.steps,
                "advisories": outcome.advisories,
            }
        )
    verdict = "succeeded" if outcome.ok else f"failed at {outcome.phase}: {outcome.error}"
    # Counts, phase and operation are edgefm's own values; drift details come from the engine and are redacted.
    data: dict[str, Any] = {"changes": outcome.changes, "phase": outcome.phase, "operation": task.operation}
    if outcome.drift:
        data["drift"] = redact(outcome.drift)
    if outcome.recovered:
        data["recovered"] = outcome.recovered
    batch.event(
        task.run_id,
        "site.succeeded" if outcome.ok else "site.failed",
        f"{task.stack}: {verdict}",
        stack=task.stack,
        data=data,
        at=outcome.finished_at,
        trusted=True,
    )


@dataclass
class _GroupState:
    """A group as the controller tracks it (plain attributes: the hot path never touches ORM objects)."""

    name: str
    position: int
    stacks: list[str]
    state: str
    approved_by: str | None
    started_at: float | None
    soak_until: float | None

    @classmethod
    def of(cls, row: GroupRow) -> _GroupState:
        return cls(row.name, row.position, list(row.stacks), row.state, row.approved_by, row.started_at, row.soak_until)


@dataclass
class _Group:
    row: _GroupState
    pending: list[str]
    running: set[str] = field(default_factory=set)
    done: dict[str, bool] = field(default_factory=dict)


class Controller:
    """Runs one rollout (a `runs` row of kind `rollout` with its groups) to an end state."""

    def __init__(
        self,
        journal: Journal,
        run_id: str,
        executor: Executor,
        *,
        clock: Callable[[], float] = time.time,
        command_interval: float = 1.0,
        settle: float = 10.0,
        poll: float | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.journal, self.run_id, self.executor, self.clock = journal, run_id, executor, clock
        self.command_interval, self.settle = command_interval, settle
        # How long one wait for results may last (clock seconds); at least a tenth of a second, so a simulated
        # clock always moves on while the rollout waits.
        self.poll = max(command_interval if poll is None else poll, 0.1)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._heartbeat = 0.0
        self._to_submit: list[SiteTask] = []
        self.on_event = on_event or (lambda _m: None)
        run = journal.run(run_id)
        if run is None or run.kind != "rollout":
            raise LookupError(f"no rollout {run_id!r} in the journal")
        if run.strategy is None:
            raise LookupError(f"rollout {run_id!r} has no strategy in the journal")
        self.actor = run.actor
        self.strategy = RolloutStrategy.model_validate(run.strategy)
        self._health = self.strategy.health.model_dump(by_alias=True)
        self._index = 0
        self.state = run.state
        self.desired = run.desired
        self.total = len(run.stacks)
        self.budget = self.strategy.failure_budget(self.total)
        self.failures = 0
        self.batch = Batch()
        self.groups: list[_Group] = []
        self._attempts: dict[str, int] = {}
        self._group_of: dict[str, _Group] = {}
        self._checks: set[str] = set()
        self._load()

    # -- state from the journal ----------------------------------------------------------------------------------

    def _load(self) -> None:
        latest: dict[str, SiteRunRow] = {}
        for site_run in sorted(self.journal.site_runs(run_id=self.run_id), key=lambda r: r.attempt):
            latest[site_run.stack] = site_run
            self._attempts[site_run.stack] = site_run.attempt
        for row in self.journal.groups(self.run_id):
            group = _Group(_GroupState.of(row), [])
            for stack in row.stacks:
                self._group_of[stack] = group
                found = latest.get(stack)
                if found is None:
                    group.pending.append(stack)
                elif found.state in (SUCCEEDED, FAILED):
                    group.done[stack] = found.state == SUCCEEDED
                    self.failures += found.state == FAILED
                else:
                    # Mid-operation when the last controller stopped: check it before anything else.
                    self.batch.site_updates.append({"k_id": found.id, "state": INTERRUPTED})
                    self._checks.add(stack)
                    group.pending.insert(0, stack)
            self.groups.append(group)

    # -- the loop -------------------------------------------------------------------------------------------------

    def run(self) -> str:
        """Drives the rollout until it has succeeded, failed or been aborted; returns that state."""
        if self.state in (SUCCEEDED, FAILED, ABORTED):
            return self.state
        if self.state != RUNNING:
            self._set_state(RUNNING, "rollout started" if self.state == QUEUED else "rollout resumed")
        last_commands = -self.command_interval
        while True:
            if time.monotonic() - last_commands >= self.command_interval:
                self._read_commands()
                last_commands = time.monotonic()
            end = self._step()
            # One transaction per tick; dispatches are durable before their work starts, so a controller that
            # dies at any point resumes with a check of each site that may have been mid-operation.
            self.journal.write(self.batch)
            self.batch = Batch()
            for task in self._to_submit:
                self.executor.submit(task)
            self._to_submit.clear()
            if end is not None:
                return end
            tick = self.clock()
            done = self.executor.wait(self._timeout())
            # Settle: gather what else finishes within `settle` seconds, so a busy fleet is journaled in few
            # transactions (sites take minutes; seconds of dispatch latency cost nothing measurable).
            while done and self.clock() < tick + self.settle:
                more = self.executor.wait(tick + self.settle - self.clock())
                if not more:
                    break
                done += more
            for task, outcome in done:
                self._finished(task, outcome)

    def _timeout(self) -> float:
        wait = self.poll
        group = self._current()
        if group is not None and group.row.state == SOAKING and group.row.soak_until is not None:
            return max(0.0, min(wait, group.row.soak_until - self.clock()))
        return wait

    def _current(self) -> _Group | None:
        # Groups succeed in order, so the first unfinished one is found from where the last search ended.
        while self._index < len(self.groups) and self.groups[self._index].row.state == SUCCEEDED:
            self._index += 1
        return self.groups[self._index] if self._index < len(self.groups) else None

    def _read_commands(self) -> None:
        run = self.journal.run(self.run_id)
        if run is not None:
            self.desired = run.desired
        # The lease: who drives the rollout, alive as of when (see `lease_holder`), renewed well within its term.
        if time.time() - self._heartbeat >= LEASE_SECONDS / 3:
            self._heartbeat = time.time()
            self.batch.run_updates.append({"k_id": self.run_id, "owner": self.owner, "heartbeat": self._heartbeat})
        group = self._current()
        if group is not None and group.row.state == WAITING_APPROVAL:
            fresh = next((g for g in self.journal.groups(self.run_id) if g.position == group.row.position), None)
            if fresh is not None and fresh.approved_by:
                group.row.approved_by = fresh.approved_by

    def _step(self) -> str | None:
        now = self.clock()
        running = self.executor.running()
        if self.desired == ABORTED:
            if running == 0:
                return self._finish(ABORTED, "rollout aborted")
            return None
        if self.failures > self.budget:
            if running == 0:
                return self._finish(FAILED, f"{self.failures} site(s) failed, more than the {self.budget} allowed")
            return None
        if self.desired == PAUSED:
            if self.state != PAUSED:
                self._set_state(PAUSED, "rollout paused: no new site starts; running sites finish")
            return None
        if self.state == PAUSED:
            self._set_state(RUNNING, "rollout resumed")
        group = self._current()
        if group is None:
            return self._finish(SUCCEEDED, f"all {len(self.groups)} group(s) succeeded")
        row = group.row
        if row.state in (QUEUED, WAITING_APPROVAL):
            if self.strategy.needs_approval(row.name) and not row.approved_by:
                if row.state != WAITING_APPROVAL:
                    self._group_state(group, WAITING_APPROVAL, f"group {row.name} waits for an approval")
                return None
            row.started_at = now
            self._group_state(group, RUNNING, f"group {row.name} started: {len(row.stacks)} site(s)", started_at=now)
        if row.state == RUNNING:
            room = self.strategy.concurrency(len(row.stacks)) - len(group.running)
            while room > 0 and group.pending:
                self._dispatch(group, group.pending.pop(0), now)
                room -= 1
            if not group.pending and not group.running:
                soak = now + self.strategy.min_success_time
                row.soak_until = soak
                failed = sum(1 for ok in group.done.values() if not ok)
                self._group_state(
                    group, SOAKING, f"group {row.name} done ({failed} failed); soaking until ready", soak_until=soak
                )
        if row.state == SOAKING and row.soak_until is not None and now >= row.soak_until:
            self._group_state(group, SUCCEEDED, f"group {row.name} succeeded", finished_at=now)
            return self._step()
        return None

    def _dispatch(self, group: _Group, stack: str, now: float) -> None:
        attempt = self._attempts.get(stack, 0) + 1
        self._attempts[stack] = attempt
        operation = "check" if stack in self._checks else "update"
        site_run_id = f"{self.run_id}:{stack}:{attempt}"
        task = SiteTask(
            self.run_id,
            site_run_id,
            stack,
            operation,
            self.actor,
            group.row.name,
            now + self.strategy.progress_deadline,
            self._health,
        )
        self.batch.site_runs.append(
            {
                "id": site_run_id,
                "run_id": self.run_id,
                "group_name": group.row.name,
                "stack": stack,
                "operation": operation,
                "state": RUNNING,
                "phase": "",
                "attempt": attempt,
                "actor": self.actor,
                "worker": "",
                "queued_at": now,
            }
        )
        self.batch.event(
            self.run_id,
            "site.started",
            f"{stack}: {operation} started",
            stack=stack,
            data={"attempt": attempt, "group": group.row.name},
            at=now,
            trusted=True,
        )
        group.running.add(stack)
        self._to_submit.append(task)

    def _finished(self, task: SiteTask, outcome: SiteOutcome) -> None:
        group = self._group_of.get(task.stack)
        if group is None or task.stack not in group.running:
            return
        group.running.discard(task.stack)
        group.done[task.stack] = outcome.ok
        self._checks.discard(task.stack)
        if not outcome.ok:
            self.failures += 1
        if not self.executor.records_results:
            site_outcome_rows(task, outcome, self.batch)
        for note in outcome.recovered:
            self.on_event(f"{task.stack}: {note}")
        self.on_event(f"{task.stack}: {'ok' if outcome.ok else 'failed: ' + str(outcome.error)}")

    # -- journal helpers ----------------------------------------------------------------------------------------

    def _group_state(self, group: _Group, state: str, message: str, **values: Any) -> None:
        group.row.state = state
        self.batch.group_updates.append(
            {"k_run_id": self.run_id, "k_position": group.row.position, "state": state, **values}
        )
        self.batch.event(
            self.run_id, f"group.{state}", message, data={"group": group.row.name}, at=self.clock(), trusted=True
        )
        self.on_event(message)

    def _set_state(self, state: str, message: str, **values: Any) -> None:
        self.state = state
        self.batch.run_updates.append({"k_id": self.run_id, "state": state, "message": message, **values})
        self.batch.event(self.run_id, f"rollout.{state}", message, at=self.clock(), trusted=True)
        self.on_event(message)

    def _finish(self, state: str, message: str) -> str:
        held = [g.row.name for g in self.groups if g.row.state in (QUEUED, WAITING_APPROVAL)]
        if held and state != SUCCEEDED:
            message += f"; not started: {', '.join(held)}"
        self._set_state(state, message, finished_at=self.clock(), owner=None, heartbeat=None)
        return state


def start_rollout(
    journal: Journal,
    strategy: RolloutStrategy,
    groups: Iterable[tuple[str, Iterable[str]]],
    actor: str,
    run_id: str | None = None,
    context: dict[str, Any] | None = None,
) -> str:
    """Journals a new rollout (queued) with its groups; a controller then runs it."""
    planned = [(name, list(stacks)) for name, stacks in groups]
    stacks = [s for _, members in planned for s in members]
    return journal.create_run(
        "rollout",
        actor,
        stacks,
        strategy=strategy.model_dump(by_alias=True),
        groups=planned,
        run_id=run_id,
        context=context,
    )


LEASE_SECONDS = 15.0


def lease_holder(journal: Journal, run_id: str, now: float | None = None) -> str | None:
    """The controller driving the run (`host:pid`) if it has shown signs of life within LEASE_SECONDS."""
    run = journal.run(run_id)
    if run is None or run.owner is None or run.heartbeat is None:
        return None
    if (time.time() if now is None else now) - run.heartbeat > LEASE_SECONDS:
        return None
    host, _, pid = run.owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return None
    return run.owner
