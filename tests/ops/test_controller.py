"""The rollout controller over simulated and real-time fake sites, with a real journal (SQLite file)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgefm.ops.controller import Controller, SiteOutcome, SiteTask, start_rollout
from edgefm.ops.journal import ABORTED, FAILED, PAUSED, RUNNING, SUCCEEDED, Journal
from edgefm.ops.simulate import SimulatedExecutor, VirtualClock
from edgefm.ops.strategy import RolloutStrategy, plan_groups
from tests.ops.fakes import SleepExecutor

ROOT = Path(__file__).resolve().parents[2]


def fleet(n: int, waves: int = 3) -> tuple[list[str], dict[str, dict[str, str]]]:
    stacks = [f"site-s{i:03d}" for i in range(n)]
    return stacks, {s: {"wave": str(1 + i % waves)} for i, s in enumerate(stacks)}


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(f"sqlite:///{tmp_path / 'journal.db'}")


def new_rollout(journal: Journal, strategy: RolloutStrategy, n: int, waves: int = 3, actor: str = "ana") -> str:
    stacks, labels = fleet(n, waves)
    groups = plan_groups(strategy, stacks, labels)
    return start_rollout(journal, strategy, [(g.name, g.stacks) for g in groups], actor)


class Tracking(SimulatedExecutor):
    """Records how many tasks run at once, and in which group order they start."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peak = 0
        self.order: list[str] = []

    def submit(self, task: SiteTask) -> None:
        super().submit(task)
        self.peak = max(self.peak, self.running())
        if not self.order or self.order[-1] != task.group:
            self.order.append(task.group or "")


def test_groups_run_in_order_with_concurrency_and_soak(journal: Journal) -> None:
    strategy = RolloutStrategy(canary=["site-s000", "site-s001"], max_concurrency=3, min_success_time=600)
    run_id = new_rollout(journal, strategy, 20)
    clock = VirtualClock()
    executor = Tracking(clock=clock, failure_rate=0.0)
    assert Controller(journal, run_id, executor, clock=clock).run() == SUCCEEDED
    assert executor.order == ["canary", "wave=1", "wave=2", "wave=3"]
    assert executor.peak == 3
    groups = journal.groups(run_id)
    assert [g.state for g in groups] == [SUCCEEDED] * 4
    # Each group starts only after the previous one's soak has ended.
    for before, after in itertools.pairwise(groups):
        assert before.soak_until is not None and after.started_at is not None
        assert after.started_at >= before.soak_until
    runs = journal.site_runs(run_id=run_id)
    assert len(runs) == 20 and {r.state for r in runs} == {SUCCEEDED}
    assert all(journal.preview(r.id) is not None for r in runs)


def test_percent_concurrency_is_of_the_group(journal: Journal) -> None:
    strategy = RolloutStrategy(canary=["site-s000"], max_concurrency="50%")
    run_id = new_rollout(journal, strategy, 41, waves=1)
    clock = VirtualClock()
    executor = Tracking(clock=clock, failure_rate=0.0)
    Controller(journal, run_id, executor, clock=clock).run()
    assert executor.peak == 20  # 50% of the 40-site group


def test_failures_past_the_budget_stop_the_rollout_and_hold_later_groups(journal: Journal) -> None:
    strategy = RolloutStrategy(canary=["site-s000"], max_concurrency=1, max_failures=1)
    run_id = new_rollout(journal, strategy, 10, waves=3)
    clock = VirtualClock()
    bad = {"site-s001", "site-s004"}  # both in wave 2 (index % 3 == 1)
    executor = SimulatedExecutor(clock=clock, failure_rate=0.0, fail=lambda s: s in bad)
    assert Controller(journal, run_id, executor, clock=clock).run() == FAILED
    run = journal.run(run_id)
    assert run is not None and "2 site(s) failed, more than the 1 allowed" in run.message
    assert "not started: wave=3" in run.message
    started = {t.stack for t in executor.submitted}
    assert not started & {"site-s002", "site-s005", "site-s008"}  # wave 3 never started
    assert {r.stack for r in journal.site_runs(run_id=run_id) if r.state == FAILED} == bad


def test_percentage_failure_budget_tolerates_failures(journal: Journal) -> None:
    strategy = RolloutStrategy(canary=["site-s000"], max_concurrency=5, max_failures="10%")
    run_id = new_rollout(journal, strategy, 30)
    clock = VirtualClock()
    bad = {"site-s003", "site-s010", "site-s020"}  # 3 of 30 = 10%: allowed
    executor = SimulatedExecutor(clock=clock, failure_rate=0.0, fail=lambda s: s in bad)
    assert Controller(journal, run_id, executor, clock=clock).run() == SUCCEEDED


def test_events_have_gapless_sequence_numbers_and_resume_after_a_seq(journal: Journal) -> None:
    strategy = RolloutStrategy(canary=["site-s000"], max_concurrency=4)
    run_id = new_rollout(journal, strategy, 12)
    clock = VirtualClock()
    Controller(journal, run_id, SimulatedExecutor(clock=clock, failure_rate=0.0), clock=clock).run()
    events = journal.events(run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = [e.kind for e in events]
    assert kinds[0] == "rollout.created" and kinds[-1] == "rollout.succeeded"
    assert kinds.count("site.started") == 12 and kinds.count("site.succeeded") == 12
    later = journal.events(run_id, after_seq=10)
    assert [e.seq for e in later] == list(range(11, len(events) + 1))


class Scripted(SimulatedExecutor):
    """Runs a command against the journal after the n-th completion (an operator acting mid-rollout)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.after: dict[int, object] = {}
        self.completed = 0

    def wait(self, timeout: float) -> list[tuple[SiteTask, SiteOutcome]]:
        done = super().wait(timeout)
        for _ in done:
            self.completed += 1
            action = self.after.pop(self.completed, None)
            if callable(action):
                action()
        return done


def test_pause_stops_new_starts_until_resumed(journal: Journal) -> None:
    strategy = RolloutStrategy(canary=["site-s000"], max_concurrency=2)
    run_id = new_rollout(journal, strategy, 9)
    clock = VirtualClock()
    executor = Scripted(clock=clock, failure_rate=0.0)
    paused_at: list[int] = []

    def pause() -> None:
        journal.set_desired(run_id, PAUSED, "ana")

    def check_and_resume() -> None:
        # While paused nothing new was submitted after the running ones drained.
        paused_at.append(len(executor.submitted))
        journal.set_desired(run_id, RUNNING, "ana")

    executor.after = {3: pause}
    controller = Controller(journal, run_id, executor, clock=clock, command_interval=0.0, poll=60.0)
    original = controller._step  # resume once the controller has reported itself paused

    def step() -> str | None:
        result = original()
        if controller.state == PAUSED and not executor.running() and not paused_at:
            submitted = len(executor.submitted)
            for _ in range(3):
                executor.wait(60)
                original()
            assert len(executor.submitted) == submitted
            check_and_resume()
        return result

    controller._step = step  # type: ignore[method-assign]
    assert controller.run() == SUCCEEDED
    kinds = [e.kind for e in journal.events(run_id)]
    assert "rollout.paused" in kinds and kinds.index("rollout.paused") < len(kinds) - 1
    assert paused_at and paused_at[0] < 9


def test_abort_lets_running_sites_finish_and_starts_nothing_new(journal: Journal) -> None:
    strategy = RolloutStrategy(canary=["site-s000"], max_concurrency=3)
    run_id = new_rollout(journal, strategy, 12)
    clock = VirtualClock()
    executor = Scripted(clock=clock, failure_rate=0.0)
    executor.after = {2: lambda: journal.set_desired(run_id, ABORTED, "ana")}
    controller = Controller(journal, run_id, executor, clock=clock, command_interval=0.0, poll=60.0)
    assert controller.run() == ABORTED
    runs = journal.site_runs(run_id=run_id)
    assert len(runs) < 12 and all(r.state in (SUCCEEDED, FAILED) for r in runs)


def test_a_group_needing_approval_waits_for_it(journal: Journal) -> None:
    strategy = RolloutStrategy(canary=["site-s000"], approve=["wave=2"])
    run_id = new_rollout(journal, strategy, 6)
    clock = VirtualClock()
    executor = SimulatedExecutor(clock=clock, failure_rate=0.0)
    controller = Controller(journal, run_id, executor, clock=clock, command_interval=0.0, poll=60.0)
    waits = 0
    original = executor.wait

    def wait(timeout: float) -> list[tuple[SiteTask, SiteOutcome]]:
        nonlocal waits
        groups = {g.name: g for g in journal.groups(run_id)}
        if groups["wave=2"].state == "waiting-approval":
            waits += 1
            assert groups["wave=3"].state == "queued"
            assert not any(t.group == "wave=2" for t in executor.submitted)
            if waits == 5:
                journal.approve_group(run_id, groups["wave=2"].position, "ben")
        return original(timeout)

    executor.wait = wait  # type: ignore[method-assign]
    assert controller.run() == SUCCEEDED
    assert waits == 5
    assert {g.name: g.approved_by for g in journal.groups(run_id)}["wave=2"] == "ben"


KILL_TARGET = """
import sys, time
from edgefm.ops.controller import Controller
from edgefm.ops.journal import Journal
from tests.ops.fakes import SleepExecutor
journal = Journal(sys.argv[1])
slow = {"site-s004", "site-s005"}
executor = SleepExecutor(lambda s: 60.0 if s in slow else 0.2, fails=lambda s: s == "site-s001")
Controller(journal, sys.argv[2], executor, command_interval=0.1, settle=0.0).run()
"""


def test_sigkill_mid_group_then_resume_touches_only_what_is_left(journal: Journal, tmp_path: Path) -> None:
    strategy = RolloutStrategy(canary=["site-s000"], max_concurrency=3, max_failures=1, group_by="wave")
    run_id = new_rollout(journal, strategy, 9, waves=1)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_TARGET, journal.url, run_id], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = {r.stack: r.state for r in journal.site_runs(run_id=run_id)}
            # The canary and the quick sites of the group are done, two slow ones are mid-update.
            if (
                runs.get("site-s004") == RUNNING
                and runs.get("site-s005") == RUNNING
                and sum(s in (SUCCEEDED, FAILED) for s in runs.values()) >= 4
            ):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the rollout did not reach the middle of its group: {runs}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {r.stack: r.state for r in journal.site_runs(run_id=run_id)}
    finished = {s for s, state in before.items() if state in (SUCCEEDED, FAILED)}
    assert before["site-s001"] == FAILED

    executor = SleepExecutor(lambda s: 0.05, fails=lambda s: s == "site-s008")
    state = Controller(journal, run_id, executor, command_interval=0.1, settle=0.0).run()
    resumed = list(executor.submitted)
    assert not {t.stack for t in resumed} & finished, "finished sites were run again"
    ops = {t.stack: t.operation for t in resumed}
    mid_update = {s for s, state in before.items() if state == RUNNING}
    assert {"site-s004", "site-s005"} <= mid_update
    assert {s for s, op in ops.items() if op == "check"} == mid_update
    assert all(op == "update" for s, op in ops.items() if s not in mid_update)
    # Checks go first.
    assert {t.stack for t in resumed[: len(mid_update)]} == mid_update
    # The budget counted the failure from before the kill: one more failure is one too many.
    assert state == FAILED
    after = journal.site_runs(run_id=run_id)
    assert {(r.stack, r.attempt, r.state) for r in after if r.stack == "site-s004"} == {
        ("site-s004", 1, "interrupted"),
        ("site-s004", 2, SUCCEEDED),
    }
