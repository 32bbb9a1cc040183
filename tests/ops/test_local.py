"""The local executor: every operation in a fresh process, `parallel` at a time."""

from __future__ import annotations

import os
from pathlib import Path

from edgefm.ops.controller import SiteTask
from edgefm.ops.local import LocalExecutor, run_all
from edgefm.ops.siteops import SiteContext, workspace
from tests.ops.fakes import pid_runner


def test_each_operation_gets_its_own_process_and_they_overlap() -> None:
    tasks = [SiteTask("r", f"r:{i}", f"site-{i}", "preview", "ana") for i in range(6)] + [
        SiteTask("r", "r:bad", "site-bad", "preview", "ana")
    ]
    with LocalExecutor(SiteContext(repo=Path(".")), parallel=3, runner=pid_runner) as executor:
        results = list(run_all(executor, tasks))
    pids = {outcome.worker for _, outcome in results}
    assert len(results) == 7 and len(pids) == 7 and str(os.getpid()) not in pids
    spans = sorted((o.started_at, o.finished_at) for _, o in results)
    overlapping = max(sum(1 for s, f in spans if s <= t < f) for t, _ in spans)
    assert overlapping == 3
    assert {t.stack for t, o in results if not o.ok} == {"site-bad"}


def test_a_workspace_links_the_checkout_but_keeps_engine_state_private(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "stacks").mkdir(parents=True)
    (repo / "Pulumi.yaml").write_text("name: x\n")
    (repo / ".state").mkdir()
    with workspace(repo) as ws:
        assert (ws / "Pulumi.yaml").resolve() == (repo / "Pulumi.yaml").resolve()
        assert (ws / "stacks").is_symlink() and not (ws / ".state").exists()
        other = ws
    assert not other.exists() and (repo / "Pulumi.yaml").exists()
