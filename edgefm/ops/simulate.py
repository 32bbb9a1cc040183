"""A simulated fleet for the rollout controller: site tasks take a realistic, seeded random time on a virtual
clock and a set share of them fail, so the controller (and its journal) can be driven over thousands of sites
in seconds. Used by the scale benchmark (`bench/rollout_scale.py`) and the controller's tests.

Per-site times (minutes) are log-normal, as long-tailed operations are: preview median 0.7, update median 2.5,
health gate median 1.0 (sigma 0.5 each), i.e. about 4.6 minutes per site on average.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from edgefm.ops.controller import SiteOutcome, SiteTask

PHASES = ("preview", "guardrails", "update", "health")


@dataclass(frozen=True)
class SiteTimes:
    """Median minutes of each phase and the log-normal sigma."""

    preview: float = 0.7
    update: float = 2.5
    health: float = 1.0
    sigma: float = 0.5


@dataclass
class VirtualClock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class SimulatedExecutor:
    """Runs tasks on a virtual clock; `fail(stack)` may force an outcome, else `failure_rate` decides."""

    clock: VirtualClock = field(default_factory=VirtualClock)
    failure_rate: float = 0.02
    times: SiteTimes = field(default_factory=SiteTimes)
    seed: int = 7
    fail: Callable[[str], bool | None] = lambda _stack: None
    records_results: bool = False
    submitted: list[SiteTask] = field(default_factory=list)
    _heap: list[tuple[float, int, SiteTask, SiteOutcome]] = field(default_factory=list)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _minutes(self, median: float) -> float:
        return self._rng.lognormvariate(0.0, self.times.sigma) * median

    def submit(self, task: SiteTask) -> None:
        self.submitted.append(task)
        start = self.clock.now
        preview = self._minutes(self.times.preview) * 60
        update = self._minutes(self.times.update) * 60
        health = self._minutes(self.times.health) * 60
        forced = self.fail(task.stack)
        failed = forced if forced is not None else self._rng.random() < self.failure_rate
        phase = self._rng.choice(PHASES) if failed else "health"
        seconds = {"preview": preview, "guardrails": preview, "update": preview + update}.get(
            phase, preview + update + health
        )
        outcome = SiteOutcome(
            ok=not failed,
            phase=phase,
            error=f"simulated failure at {phase}" if failed else None,
            changes={"update": 1, "same": 41},
            steps=[
                {
                    "urn": f"urn:pulumi:{task.stack}::edgefm::kubernetes:apps/v1:Deployment::triton",
                    "op": "update",
                    "keys": ["spec"],
                }
            ],
            started_at=start,
            finished_at=start + seconds,
            preview_seconds=preview,
            update_seconds=update if phase in ("update", "health") else None,
            health_seconds=health if phase == "health" else None,
            worker="simulated",
        )
        heapq.heappush(self._heap, (outcome.finished_at, len(self.submitted), task, outcome))

    def wait(self, timeout: float) -> list[tuple[SiteTask, SiteOutcome]]:
        if not self._heap or self._heap[0][0] > self.clock.now + timeout:
            self.clock.now += timeout
            return []
        first = self._heap[0][0]
        self.clock.now = max(self.clock.now, first)
        done = []
        while self._heap and self._heap[0][0] <= first:
            _, _, task, outcome = heapq.heappop(self._heap)
            done.append((task, outcome))
        return done

    def running(self) -> int:
        return len(self._heap)
