"""Site operations in parallel on this machine: a pool of `parallel` worker processes (default: the number of
cores), a fresh process for every operation (`max_tasks_per_child=1`) forked from a server that has already
imported the engine's Python side, so a new process costs milliseconds, not an interpreter start."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence

from edgefm.ops.controller import SiteOutcome, SiteTask
from edgefm.ops.siteops import SiteContext, restore_default_signals, run_site

SiteRunner = Callable[[SiteTask, SiteContext], SiteOutcome]
PRELOAD = ["edgefm.ops.siteops", "edgefm.ops.fleet", "edgefm.ops.engine"]


def default_parallelism() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class LocalExecutor:
    """Runs site tasks in worker processes on this machine (see the module docstring)."""

    records_results = False

    def __init__(self, ctx: SiteContext, parallel: int | None = None, runner: SiteRunner = run_site) -> None:
        self.ctx, self.runner = ctx, runner
        self.parallel = parallel or default_parallelism()
        context = multiprocessing.get_context("forkserver")
        # The guardrails pack is imported from the checkout: on the path before the server starts, so it is
        # loaded once there too rather than in every operation's process.
        pack = str(ctx.repo / "policies" / "guardrails")
        if (ctx.repo / "policies" / "guardrails").is_dir() and pack not in sys.path:
            sys.path.insert(0, pack)
        context.set_forkserver_preload([*PRELOAD, "edgefm_guardrails.crossguard", "edgefm_guardrails.model"])
        self._pool = cf.ProcessPoolExecutor(
            max_workers=self.parallel, mp_context=context, max_tasks_per_child=1, initializer=restore_default_signals
        )
        self._futures: dict[cf.Future[SiteOutcome], SiteTask] = {}

    def submit(self, task: SiteTask) -> None:
        self._futures[self._pool.submit(self.runner, task, self.ctx)] = task

    def wait(self, timeout: float) -> list[tuple[SiteTask, SiteOutcome]]:
        if not self._futures:
            return []
        done, _ = cf.wait(self._futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out = []
        for future in done:
            task = self._futures.pop(future)
            try:
                out.append((task, future.result()))
            except Exception as exc:  # a worker process that died (killed, out of memory) fails its site
                out.append((task, SiteOutcome(ok=False, phase="worker", error=f"worker process: {exc!r}")))
        return out

    def running(self) -> int:
        return len(self._futures)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def run_all(executor: LocalExecutor, tasks: Sequence[SiteTask]) -> Iterator[tuple[SiteTask, SiteOutcome]]:
    """Submits every task and yields each outcome as it arrives."""
    for task in tasks:
        executor.submit(task)
    while executor.running():
        yield from executor.wait(3600.0)
