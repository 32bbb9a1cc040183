"""Executors for controller tests: one on real time (threads), for a controller process that gets killed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from queue import Empty, Queue

from edgefm.ops.controller import SiteOutcome, SiteTask


class SleepExecutor:
    """Each task takes `seconds(stack)` of real time; `fails` decides its outcome."""

    records_results = False

    def __init__(self, seconds: Callable[[str], float], fails: Callable[[str], bool] = lambda _s: False) -> None:
        self.seconds, self.fails = seconds, fails
        self.done: Queue[tuple[SiteTask, SiteOutcome]] = Queue()
        self.submitted: list[SiteTask] = []
        self._running = 0
        self._lock = threading.Lock()
        self.max_running = 0

    def submit(self, task: SiteTask) -> None:
        self.submitted.append(task)
        with self._lock:
            self._running += 1
            self.max_running = max(self.max_running, self._running)

        def work() -> None:
            start = time.time()
            time.sleep(self.seconds(task.stack))
            failed = self.fails(task.stack)
            self.done.put(
                (
                    task,
                    SiteOutcome(
                        ok=not failed,
                        phase="update" if failed else "health",
                        error="boom" if failed else None,
                        changes={"update": 1},
                        started_at=start,
                        finished_at=time.time(),
                        preview_seconds=0.01,
                        update_seconds=0.01,
                        health_seconds=0.01,
                        worker="sleep",
                    ),
                )
            )

        threading.Thread(target=work, daemon=True).start()

    def wait(self, timeout: float) -> list[tuple[SiteTask, SiteOutcome]]:
        out = []
        try:
            out.append(self.done.get(timeout=timeout))
            while True:
                out.append(self.done.get_nowait())
        except Empty:
            pass
        with self._lock:
            self._running -= len(out)
        return out

    def running(self) -> int:
        with self._lock:
            return self._running


def pid_runner(task: SiteTask, ctx: object) -> SiteOutcome:
    """A site 'operation' that reports the process it ran in and holds it for a moment."""
    import os

    start = time.time()
    time.sleep(float(os.environ.get("EDGEFM_FAKE_SITE_SECONDS", "0.5")))
    return SiteOutcome(
        ok=task.stack != "site-bad",
        phase="health",
        error=None,
        started_at=start,
        finished_at=time.time(),
        worker=str(os.getpid()),
    )
