"""The job queue on a real PostgreSQL with two `edgefm worker` processes on 127.0.0.1, sites run by a stand-in
(`EDGEFM_SITE_RUNNER`): previews spread over both workers, one job per stack at a time, a rollout with an
approval driven by a controller job. The same through the real engine is in test_workers.py."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from edgefm.ops.service import FleetService
from edgefm.ops.strategy import RolloutStrategy

ROOT = Path(__file__).resolve().parents[2]
SITES = ["site-bridge-north", "site-bridge-south", "site-harbor-ocp", "site-viaduct-cpu"]


@dataclass
class Workers:
    service: FleetService
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]

    def wait(self, what: str, done: Callable[[], bool], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            for proc, log in zip(self.procs, self.logs, strict=True):
                if proc.poll() is not None:
                    pytest.fail(f"a worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        pytest.fail(f"{what} did not happen in {timeout:.0f}s:\n{self.logs[0].read_text()[-3000:]}")


@pytest.fixture(scope="module")
def workers(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    name = f"q{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = postgres.rsplit("/", 1)[0] + f"/{name}"
    service = FleetService(url, ROOT)
    tmp = tmp_path_factory.mktemp("queue")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "EDGEFM_SITE_RUNNER": "tests.ops.fakes:pid_runner",
        "EDGEFM_FAKE_SITE_SECONDS": "1.0",
    }
    procs, logs = [], []
    for i in (1, 2):
        log = tmp / f"worker{i}.log"
        with log.open("wb") as fh:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "edgefm",
                        "worker",
                        "--database",
                        url,
                        "--concurrency",
                        "3",
                        "--name",
                        f"w{i}",
                    ],
                    cwd=ROOT,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    env=env,
                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
                )
            )
        logs.append(log)
    try:
        yield Workers(service, procs, logs)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        service.close()


def test_workers_restore_default_sigint(workers: Workers) -> None:
    workers.wait("the workers' start", lambda: all("worker on" in log.read_text() for log in workers.logs))
    for proc in workers.procs:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16)
        assert not ignored & (1 << (signal.SIGINT - 1)), "SIGINT is still ignored in the worker"


def test_a_preview_job_spreads_over_both_workers(workers: Workers) -> None:
    service = workers.service
    job = service.start_preview(["hub", *SITES], "ana")
    workers.wait("the preview job's end", lambda: _run_state(service, job) == "succeeded")
    runs = [r for s in ["hub", *SITES] for r in service.site_runs(s) if r.run_id == job]
    assert len(runs) == 5 and {r.state for r in runs} == {"succeeded"}
    assert {r.worker for r in runs} == {"w1", "w2"}
    events = service.events(job)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].kind == "run.succeeded" and sum(e.kind == "site.running" for e in events) == 5


def test_jobs_on_one_stack_never_overlap(workers: Workers) -> None:
    service = workers.service
    jobs = [service.start_preview(["site-viaduct-cpu"], "ana") for _ in range(4)]
    workers.wait("four previews of one stack", lambda: all(_run_state(service, j) == "succeeded" for j in jobs))
    runs = sorted(
        (r for r in service.site_runs("site-viaduct-cpu") if r.run_id in jobs), key=lambda r: r.started_at or 0
    )
    assert len(runs) == 4
    for first, second in itertools.pairwise(runs):
        assert first.finished_at is not None and second.started_at is not None
        assert second.started_at >= first.finished_at, "two jobs ran on one stack at once"


def test_a_rollout_with_an_approval_through_the_queue(workers: Workers) -> None:
    service = workers.service
    strategy = RolloutStrategy(stacks=SITES, canary=["site-bridge-south"], max_concurrency=2, approve=["wave=3"])
    rollout_id = service.start_rollout(strategy, "ana")

    def state() -> str:
        view = service.rollout(rollout_id)
        assert view is not None
        return view.state

    def waiting() -> bool:
        view = service.rollout(rollout_id)
        return view is not None and any(g.state == "waiting-approval" for g in view.groups)

    workers.wait("the approval wait", waiting)
    with pytest.raises(PermissionError):
        service.approve(rollout_id, "ana")
    service.approve(rollout_id, "ben")
    workers.wait("the rollout's end", lambda: state() in ("succeeded", "failed", "aborted"))
    view = service.rollout(rollout_id)
    assert view is not None
    assert view.state == "succeeded", view.message
    assert sorted(r.stack for r in view.site_runs) == sorted(SITES)
    kinds = [e.kind for e in service.events(rollout_id)]
    assert kinds.index("group.waiting-approval") < kinds.index("group.approved") < kinds.index("rollout.succeeded")


def _run_state(service: FleetService, run_id: str) -> str:
    run = service.journal.run(run_id)
    return run.state if run is not None else "missing"
