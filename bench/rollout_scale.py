"""The rollout controller over 10,000 simulated sites: controller CPU (journal included) and a time model.

A simulated executor (`edgefm.ops.simulate`) gives every site a log-normal preview, update and health time on a
virtual clock and fails 2% of them; the controller runs the real strategy logic and writes the real journal
(SQLite file, WAL). CPU is this process's CPU time from journaling the rollout to its end, which is all the
controller's (the simulation's own share, a heap push and pop per site, is included too).

    python bench/rollout_scale.py [--sites 10000] [--concurrency 200]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from edgefm.ops.controller import Controller, start_rollout
from edgefm.ops.journal import Journal
from edgefm.ops.simulate import SimulatedExecutor, SiteTimes, VirtualClock
from edgefm.ops.strategy import RolloutStrategy, plan_groups


def fleet(sites: int, regions: int) -> tuple[list[str], dict[str, dict[str, str]]]:
    stacks = [f"site-{i:05d}" for i in range(sites)]
    return stacks, {s: {"region": f"r{i % regions:02d}"} for i, s in enumerate(stacks)}


def run(sites: int, concurrency: int, regions: int, db: Path | str) -> dict[str, Any]:
    stacks, labels = fleet(sites, regions)
    strategy = RolloutStrategy(
        canary=stacks[:10],
        group_by="region",
        max_concurrency=concurrency,
        max_failures="5%",
        min_success_time=600,
        progress_deadline=3600,
    )
    journal = Journal(db if isinstance(db, str) else f"sqlite:///{db}")
    clock = VirtualClock()
    executor = SimulatedExecutor(clock=clock, failure_rate=0.02, times=SiteTimes())
    sim_cpu = [0.0]
    for name in ("submit", "wait"):
        method = getattr(executor, name)

        def timed(*args: Any, _method: Any = method) -> Any:
            t0 = time.process_time()
            try:
                return _method(*args)
            finally:
                sim_cpu[0] += time.process_time() - t0

        setattr(executor, name, timed)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    groups = plan_groups(strategy, stacks, labels)
    run_id = start_rollout(journal, strategy, [(g.name, g.stacks) for g in groups], "bench")
    start = clock.now
    state = Controller(journal, run_id, executor, clock=clock).run()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    runs = journal.site_runs(run_id=run_id)
    events = journal.events(run_id, limit=10**7)
    failed = sum(r.state == "failed" for r in runs)
    journal.close()
    return {
        "state": state,
        "cpu": cpu,
        "sim_cpu": sim_cpu[0],
        "wall": wall,
        "hours": (clock.now - start) / 3600,
        "site_runs": len(runs),
        "failed": failed,
        "events": len(events),
        "groups": len(groups),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--regions", type=int, default=10)
    parser.add_argument("--database", help="journal URL (an empty PostgreSQL database); default: a SQLite file")
    parser.add_argument("--reps", type=int, default=3, help="runs (each a fresh journal); the median is reported")
    args = parser.parse_args()
    results = []
    for _ in range(1 if args.database else args.reps):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run(args.sites, args.concurrency, args.regions, args.database or Path(tmp) / "journal.db"))
    r = sorted(results, key=lambda x: x["cpu"])[len(results) // 2]
    print("controller CPU per run (s): " + ", ".join(f"{x['cpu']:.2f}" for x in results) + "; the median run:")
    where = "PostgreSQL (server CPU not counted)" if args.database else "SQLite, in this process"
    print(f"journal: {where}")
    print(
        f"{args.sites} simulated sites, {r['groups']} groups (canary of 10, then {args.regions} by region), "
        f"maxConcurrency {args.concurrency}, 2% failures, 10-minute soak per group"
    )
    print(f"  rollout {r['state']}: {r['site_runs']} site runs ({r['failed']} failed), {r['events']} events journaled")
    print(
        f"  controller CPU {r['cpu']:.2f} s, journal included (the simulated fleet's own share in it: "
        f"{r['sim_cpu']:.2f} s); wall {r['wall']:.2f} s; simulated duration {r['hours']:.1f} h"
    )
    times = SiteTimes()
    mean = sum(m * math.exp(times.sigma**2 / 2) for m in (times.preview, times.update, times.health))
    print("\nTime model: hours = sites * minutes per site / concurrency / 60 (+ soaks, + approvals)")
    print(f"  {'sites':>7} {'concurrency':>11} {'min/site':>8} {'hours':>7}")
    for n, c, m in [
        (100, 10, mean),
        (1000, 50, mean),
        (3500, 100, mean),
        (10000, 200, mean),
        (10000, 500, mean),
        (10000, 200, 15.0),
    ]:
        print(f"  {n:>7} {c:>11} {m:>8.1f} {n * m / c / 60:>7.1f}")


if __name__ == "__main__":
    main()
