"""Distributed workers on the real engine: an embedded PostgreSQL, two `edgefm worker` processes on 127.0.0.1,
previews and a rollout of the sample fleet (render mode) through the queue, one job per stack at a time."""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from edgefm.model.stacks import HUB_STACK, access_stack_names
from edgefm.ops.engine import Manifest, workspace_options
from edgefm.ops.fleet import Fleet
from edgefm.ops.service import FleetService
from edgefm.ops.strategy import HealthGate, RolloutStrategy

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
PROJECT_FILES = ["Pulumi.yaml", "__main__.py", "edgefm", "components", "policies", "stacks", "pyproject.toml"]
SITES = ["site-bridge-north", "site-bridge-south", "site-harbor-ocp", "site-viaduct-cpu"]


@dataclass
class Cluster:
    service: FleetService
    workers: list[subprocess.Popen[bytes]]
    logs: list[Path]


def _database(postgres: str) -> str:
    name = f"w{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return postgres.rsplit("/", 1)[0] + f"/{name}"


def _ignore_sigint() -> None:
    # How a daemon or a background shell job starts its children.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(scope="module")
def cluster(engine: Manifest, postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("workers")
    project, state, out = root / "project", root / "state", root / "out"
    project.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, project / name)
    (project / ".venv").symlink_to(ROOT / ".venv")
    state.mkdir()
    options = functools.partial(workspace_options, manifest=engine, backend_url=state.as_uri())
    fleet = Fleet(project, options, render_root=out, policy_packs=[])
    for hub_side in [HUB_STACK, *access_stack_names(fleet.stacks())]:  # sites read the hub's and their shard's
        fleet.up(hub_side)
    url = _database(postgres)
    service = FleetService(url, project, render_root=out, backend_url=state.as_uri())
    workers, logs = [], []
    for i in (1, 2):
        log = root / f"worker{i}.log"
        with log.open("wb") as fh:
            workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "edgefm",
                        "worker",
                        "--database",
                        url,
                        "--concurrency",
                        "2",
                        "--name",
                        f"w{i}",
                    ],
                    cwd=project,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_ignore_sigint,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            )
        logs.append(log)
    try:
        yield Cluster(service, workers, logs)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        service.close()


def _wait(cluster: Cluster, what: str, done: object, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(done) and done():
            return
        for proc, log in zip(cluster.workers, cluster.logs, strict=True):
            if proc.poll() is not None:
                pytest.fail(f"a worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(1)
    pytest.fail(f"{what} did not happen in {timeout:.0f}s; worker log:\n{cluster.logs[0].read_text()[-3000:]}")


def test_workers_restore_default_sigint(cluster: Cluster) -> None:
    _wait(cluster, "the workers' start", lambda: all("worker on" in log.read_text() for log in cluster.logs))
    for proc in cluster.workers:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16)
        assert not ignored & (1 << (signal.SIGINT - 1)), "SIGINT is still ignored in the worker"


def test_previews_run_on_both_workers_and_are_journaled(cluster: Cluster) -> None:
    service = cluster.service
    job = service.start_preview(SITES, "ana")
    _wait(cluster, "the preview job", lambda: _run_state(service, job) in ("succeeded", "failed"))
    run = service.journal.run(job)
    assert run is not None
    assert run.state == "succeeded", run.message
    runs = [r for s in SITES for r in service.site_runs(s) if r.run_id == job]
    assert len(runs) == 4 and all(r.state == "succeeded" and r.preview_seconds for r in runs)
    assert all(r.changes.get("create", 0) > 0 for r in runs)
    assert len({r.worker.rsplit(":", 1)[0] + r.worker for r in runs}) >= 2, [r.worker for r in runs]
    preview = service.journal.preview(runs[0].id)
    assert preview is not None and preview.steps and {s["op"] for s in preview.steps} == {"create"}
    events = service.events(job)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(e.kind == "site.succeeded" for e in events) == 4 and events[-1].kind == "run.succeeded"


def test_jobs_on_one_stack_wait_for_each_other(cluster: Cluster) -> None:
    service = cluster.service
    jobs = [service.start_preview(["site-viaduct-cpu"], "ana") for _ in range(3)]
    _wait(cluster, "three previews of one stack", lambda: all(_run_state(service, j) == "succeeded" for j in jobs))
    runs = sorted(
        (r for r in service.site_runs("site-viaduct-cpu") if r.run_id in jobs), key=lambda r: r.started_at or 0
    )
    assert len(runs) == 3
    for first, second in itertools.pairwise(runs):
        assert first.finished_at is not None and second.started_at is not None
        assert second.started_at >= first.finished_at, "two jobs ran on one stack at once"


def test_a_rollout_across_two_workers(cluster: Cluster) -> None:
    service = cluster.service
    strategy = RolloutStrategy(
        stacks=SITES,
        canary=["site-bridge-south"],
        max_concurrency=2,
        approve=["wave=3"],
        health=HealthGate(interval=1),
        progress_deadline=900,
    )
    rollout_id = service.start_rollout(strategy, "ana")

    def waiting() -> bool:
        view = service.rollout(rollout_id)
        return view is not None and any(g.state == "waiting-approval" for g in view.groups)

    _wait(cluster, "the approval wait before wave 3", waiting)
    with pytest.raises(PermissionError):
        service.approve(rollout_id, "ana")
    service.approve(rollout_id, "ben")

    def ended() -> bool:
        view = service.rollout(rollout_id)
        return view is not None and view.state in ("succeeded", "failed", "aborted")

    _wait(cluster, "the rollout's end", ended)
    view = service.rollout(rollout_id)
    assert view is not None
    assert view.state == "succeeded", view.message
    assert [g.name for g in view.groups] == ["canary", "wave=1", "wave=2", "wave=3"]
    assert sorted(r.stack for r in view.site_runs) == sorted(SITES)
    assert all(r.state == "succeeded" and r.update_seconds for r in view.site_runs)
    kinds = [e.kind for e in service.events(rollout_id)]
    assert kinds.index("group.waiting-approval") < kinds.index("group.approved")


def _run_state(service: FleetService, run_id: str) -> str:
    run = service.journal.run(run_id)
    return run.state if run is not None else "missing"
