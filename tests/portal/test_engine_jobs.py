"""The portal's jobs on the real engine: an `edgefm worker` on 127.0.0.1 runs them from the queue in the embedded
PostgreSQL, in render mode (file backend, manifests written instead of applied).

- A change preview started from the portal previews exactly the sites the edit affects (`edgefm.ops.affected`),
  each on the engine with the edited placement policy in its workspace; the page shows each site's planned steps
  per resource, and the checkout's files and the stacks' state are left as they were.
- Site updates journal the stack's outputs with every output the engine marks secret masked; the site page
  shows them.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edgefm.model.stacks import HUB_STACK, access_stack_names
from edgefm.ops.controller import SiteTask, site_outcome_rows
from edgefm.ops.engine import Manifest, workspace_options
from edgefm.ops.fleet import Fleet
from edgefm.ops.journal import REDACTED, Batch
from edgefm.ops.queue import queue_site_runs
from edgefm.ops.service import FleetService
from edgefm.ops.siteops import CHANGE_OPS, SiteContext, run_site
from edgefm.portal.server import build
from edgefm.portal.settings import PortalSettings
from tests.engine.conftest import engine
from tests.portal.conftest import ROOT, csrf_of, new_database, sign_in

__all__ = ["engine"]  # the session's engine fixture

pytestmark = pytest.mark.engine

PROJECT_FILES = ["Pulumi.yaml", "__main__.py", "edgefm", "components", "policies", "stacks", "portal"]
# The sample fleet less the OpenShift site (its preview adds minutes and nothing this module checks).
SITES = ["site-bridge-north", "site-bridge-south", "site-viaduct-cpu"]


@dataclass
class Env:
    project: Path
    out: Path
    service: FleetService
    fleet: Fleet
    worker: subprocess.Popen[bytes]
    log: Path
    updates: dict[str, SiteTask]


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def env(engine: Manifest, postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("portal-jobs")
    project, state, out = root / "project", root / "state", root / "out"
    project.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, project / name)
    (project / "stacks" / "Pulumi.site-harbor-ocp.yaml").unlink()
    (project / ".venv").symlink_to(ROOT / ".venv")
    state.mkdir()
    options = functools.partial(workspace_options, manifest=engine, backend_url=state.as_uri())
    fleet = Fleet(project, options, render_root=out, policy_packs=[])
    for hub_side in [HUB_STACK, *access_stack_names(fleet.stacks())]:  # sites read the hub's and their shard's
        fleet.up(hub_side)
    service = FleetService(new_database(postgres), project, render_root=out, backend_url=state.as_uri())
    # The sites updated the way a worker updates them (preview, guardrails, update), outcomes journaled.
    ctx = SiteContext(project, render_root=out, backend_url=state.as_uri())
    run_id = service.journal.create_run("update", "olga", SITES)
    batch = Batch()
    tasks = queue_site_runs(batch, run_id, SITES, "update", "olga")
    service.journal.write(batch)
    for task in tasks:
        outcome = run_site(task, ctx)
        assert outcome.ok, (task.stack, outcome.error)
        done = Batch()
        site_outcome_rows(task, outcome, done)
        service.journal.write(done, settle_run=run_id)
    log = root / "worker.log"
    with log.open("wb") as fh:
        worker = subprocess.Popen(
            [sys.executable, "-m", "edgefm", "worker", "--database", service.url, "--concurrency", "2"],
            cwd=project,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        yield Env(project, out, service, fleet, worker, log, {t.stack: t for t in tasks})
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        service.close()


def _wait(env: Env, what: str, done: object, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(done) and done():
            return
        if env.worker.poll() is not None:
            pytest.fail(f"the worker exited with {env.worker.returncode}:\n{env.log.read_text()[-3000:]}")
        time.sleep(1)
    pytest.fail(f"{what} did not happen in {timeout:.0f}s; worker log:\n{env.log.read_text()[-3000:]}")


def _client(env: Env) -> TestClient:
    settings = PortalSettings(
        repo=env.project,
        access_file=env.project / "portal" / "access.yaml",
        users_file=env.project / "portal" / "users.demo.yaml",
    )
    return TestClient(build(settings, env.service), base_url="http://127.0.0.1")


def test_a_change_preview_runs_the_engine_on_exactly_the_affected_sites(env: Env) -> None:
    files, rendered = _digest(env.project), _digest(env.out)
    with _client(env) as olga:
        sign_in(olga, "olga")
        form = {"layer": "defaults", "key": "model.version", "value": '"1.2.0"', "csrftoken": csrf_of(olga)}
        started = olga.post("/changes", data=form, follow_redirects=False)
        assert started.status_code == 303, started.text
        run_id = started.headers["location"].rsplit("/", 1)[1]

        def ended() -> bool:
            view = env.service.change_preview(run_id)
            return view is not None and view.state in ("succeeded", "failed")

        _wait(env, "the change preview", ended)
        view = env.service.change_preview(run_id)
        assert view is not None and view.state == "succeeded", (view, env.log.read_text()[-3000:])
        # The canary profile pins bridge-south's model version: the default reaches the other two.
        assert [c.stack for c in view.sites] == ["site-bridge-north", "site-viaduct-cpu"]
        for site in view.sites:
            assert site.run.operation == "change-preview" and site.run.state == "succeeded", site.run.error
            assert site.reasons == ["resolved profile changed (policies/placement.yaml)"]
            # The engine plans changes to the deployed stack: updates of existing resources, each with its keys.
            assert site.steps and {s["op"] for s in site.steps} <= CHANGE_OPS, site.steps
            assert any(s["op"] == "update" and s["keys"] for s in site.steps), site.steps
        page = olga.get(f"/changes/{run_id}").text
        assert "2 site(s) affected, 2 previewed" in page
        north = page.split('data-stack="site-bridge-north"')[1].split("</section>")[0]
        assert '<table class="diff resource-diff">' in north and 'class="op op-update"' in north
        assert '<td class="after"><code>"1.2.0"</code>' in north  # beside it, the profile diff
    # Nothing was written: the checkout, the rendered manifests and each stack's state are as they were.
    assert _digest(env.project) == files and _digest(env.out) == rendered
    for stack in ("site-bridge-north", "site-viaduct-cpu"):
        assert set(env.fleet.preview(stack).changes) == {"same"}, stack


def test_an_update_journals_its_outputs_with_secrets_masked(env: Env) -> None:
    stack = "site-bridge-north"
    engine_outputs = env.fleet.stack(stack).outputs()
    recorded = env.service.outputs(stack)
    assert recorded is not None and set(recorded) == set(engine_outputs)
    secret = {k for k, v in engine_outputs.items() if v.secret}
    assert secret, "the site exports no secret output: this check would prove nothing"
    assert all(recorded[k] == REDACTED for k in secret)
    plain = [k for k, v in engine_outputs.items() if not v.secret and isinstance(v.value, str) and v.value]
    assert plain and all(recorded[k] == engine_outputs[k].value for k in plain if "key" not in k.lower())
    with _client(env) as vic:
        sign_in(vic, "vic")
        page = vic.get(f"/sites/{stack}").text
    table = page.split('<table class="outputs">')[1].split("</table>")[0]
    assert all(f"<td>{k}</td>" in table for k in engine_outputs)
    assert all(f'<td>{k}</td><td><code>"[secret]"</code>' in table for k in secret), table
    # (A rendered site's kubeconfig is empty; the lab test checks a real one never reaches the page.)
    for k in secret:
        value = engine_outputs[k].value
        assert not isinstance(value, str) or len(value) < 8 or value not in page
