"""Drift end to end, in a browser: a site of the fleet lab is updated for real, an object edgefm manages is
changed behind its back through the site's Kubernetes API, an operator starts a drift check from the portal (a
job an `edgefm worker` runs: a refresh in preview-only mode against the site's cluster), and the inventory and
the site page flag that site's drift with the resource.

The lab here is one of its own, over a project with the hub and one site: the session's lab
(tests/engine/conftest.py `fleet_lab`) holds the objects the engine tests created from their own state backend,
and the Kubernetes provider refuses to create an object that exists.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from edgefm.model.stacks import HUB_STACK, access_stack_names, access_stack_of
from edgefm.ops.controller import site_outcome_rows
from edgefm.ops.engine import Manifest, workspace_options
from edgefm.ops.fleet import Fleet
from edgefm.ops.journal import Batch
from edgefm.ops.lab.kubeapi import KubeApi
from edgefm.ops.lab.runtime import Lab, LabError
from edgefm.ops.queue import queue_site_runs
from edgefm.ops.service import FleetService
from edgefm.ops.siteops import SiteContext, run_site
from edgefm.portal.server import build
from edgefm.portal.settings import PortalSettings
from edgefm.portal.watch import PolledStatus, lab_probe
from tests.engine.conftest import engine, lab_tools
from tests.portal.browsing import browser, free_port, serve, shots, signed_in, stop
from tests.portal.conftest import ROOT, new_database

__all__ = ["browser", "engine", "lab_tools", "shots"]  # fixtures

pytestmark = pytest.mark.engine

SITE = "site-viaduct-cpu"
PROJECT_FILES = ["Pulumi.yaml", "__main__.py", "edgefm", "components", "policies", "stacks", "portal"]


@dataclass
class Env:
    project: Path
    lab: Lab
    fleet: Fleet
    service: FleetService
    base: str
    worker: subprocess.Popen[bytes]
    log: Path

    def api(self) -> KubeApi:
        return KubeApi(self.lab.cluster(SITE).credentials(self.lab.dir))


@pytest.fixture(scope="module")
def env(engine: Manifest, lab_tools: Path, postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("portal-lab")
    project, backend = root / "project", root / "state"
    project.mkdir()
    backend.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, project / name)
    for stack_file in (project / "stacks").glob("Pulumi.site-*.yaml"):
        if stack_file.name != f"Pulumi.{SITE}.yaml":
            stack_file.unlink()
    (project / ".venv").symlink_to(ROOT / ".venv")
    # The lab's default place in the project (.state/lab): the portal's health probe finds its clusters there.
    lab = Lab(project)
    try:
        lab.up()
    except LabError as exc:
        lab.down(purge=True)
        pytest.fail(f"edgefm lab up failed: {exc}", pytrace=False)
    worker: subprocess.Popen[bytes] | None = None
    server = None
    service = None
    try:
        options = functools.partial(workspace_options, manifest=engine, backend_url=backend.as_uri())
        fleet = Fleet(project, options, policy_packs=[], lab_dir=lab.dir)
        shards = access_stack_names(fleet.stacks())
        for stack in (HUB_STACK, access_stack_of(SITE, len(shards))):
            fleet.up(stack)
        service = FleetService(new_database(postgres), project, backend_url=backend.as_uri(), lab_dir=lab.dir)
        # The site updated as a worker updates it (preview, guardrails, update), its outcome journaled.
        ctx = SiteContext(project, backend_url=backend.as_uri(), lab_dir=lab.dir)
        run_id = service.journal.create_run("update", "olga", [SITE])
        batch = Batch()
        (task,) = queue_site_runs(batch, run_id, [SITE], "update", "olga")
        service.journal.write(batch)
        outcome = run_site(task, ctx)
        assert outcome.ok, outcome.error
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
        settings = PortalSettings(
            repo=project,
            access_file=project / "portal" / "access.yaml",
            users_file=project / "portal" / "users.demo.yaml",
            stream_poll_s=0.2,
        )
        status = PolledStatus(lambda: [SITE], lab_probe(project), interval_s=5).start()
        port = free_port()
        server = serve(build(settings, service, status), port)
        yield Env(project, lab, fleet, service, f"http://127.0.0.1:{port}", worker, log)
        status.stop()
    finally:
        if server is not None:
            stop(server)
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        if service is not None:
            service.close()
        stopped = lab.down(purge=True)
        assert all(stopped.values()), stopped


def _managed_config_map(env: Env) -> tuple[str, str, str, str]:
    """(namespace, name, data key, resource name) of a ConfigMap the site's stack manages, from its state."""
    deployment = env.fleet.stack(SITE).export_stack().deployment
    assert deployment is not None
    for resource in deployment["resources"]:
        outputs: dict[str, Any] = resource.get("outputs") or {}
        if resource["type"] == "kubernetes:core/v1:ConfigMap" and outputs.get("data"):
            meta = outputs["metadata"]
            return meta["namespace"], meta["name"], sorted(outputs["data"])[0], resource["urn"].rsplit("::", 1)[-1]
    raise AssertionError(f"{SITE} manages no ConfigMap with data")


def test_drift_made_through_the_sites_api_is_flagged_after_a_check_from_the_portal(
    browser: Browser, env: Env, shots: Path
) -> None:
    olga = signed_in(browser, env.base, "olga")
    row = olga.locator(f'tr[data-stack="{SITE}"]')
    expect(row.locator("td.drift")).to_have_text("-")  # never checked
    # Health comes from the site's lab cluster, read off the request path.
    expect(row.locator("td.health")).to_have_text("healthy", timeout=30_000)
    namespace, name, key, resource = _managed_config_map(env)
    api = env.api()
    try:
        path = f"api/v1/namespaces/{namespace}/configmaps/{name}"
        api.patch(path, {"data": {key: "changed behind edgefm's back"}})
        assert api.get(path)["data"][key] == "changed behind edgefm's back"
    finally:
        api.close()
    olga.goto(f"/sites/{SITE}")
    olga.click("#check-drift")
    olga.wait_for_url(f"{env.base}/runs/*")
    run_id = olga.url.rsplit("/", 1)[1]
    # The run page streams the job's events until it ends.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        run = env.service.journal.run(run_id)
        if run is not None and run.state in ("succeeded", "failed"):
            break
        if env.worker.poll() is not None:
            pytest.fail(f"the worker exited with {env.worker.returncode}:\n{env.log.read_text()[-3000:]}")
        time.sleep(1)
    run = env.service.journal.run(run_id)
    assert run is not None and run.state == "succeeded", (run, env.log.read_text()[-3000:])
    expect(olga.locator('#events li[data-kind="run.succeeded"]')).to_have_count(1, timeout=30_000)
    olga.goto("/")
    cell = olga.locator(f'tr[data-stack="{SITE}"] td.drift .badge')
    expect(cell).to_contain_text("drifted")
    # The drifted resource, as the engine names it (its Pulumi resource name) and with what changed.
    assert f"ConfigMap/{resource}: data" in (cell.get_attribute("title") or ""), cell.get_attribute("title")
    olga.screenshot(path=str(shots / "drift.png"), full_page=True)
    olga.goto(f"/sites/{SITE}")
    expect(olga.locator("section.drift")).to_contain_text(f"ConfigMap/{resource}: data")
    olga.screenshot(path=str(shots / "site-drift.png"))


def test_the_site_page_shows_the_journaled_outputs_and_no_secret(browser: Browser, env: Env) -> None:
    """The site's update journaled its outputs; the lab cluster's kubeconfig (a client key inside) is an output
    the engine marks secret: the page names it and never shows it."""
    outputs = env.fleet.stack(SITE).outputs()
    kubeconfig = str(outputs["kubeconfig"].value)
    assert outputs["kubeconfig"].secret and "client-key-data" in kubeconfig
    key = kubeconfig.split("client-key-data:", 1)[1].split()[0]
    vic = signed_in(browser, env.base, "vic")
    vic.goto(f"/sites/{SITE}")
    table = vic.locator("table.outputs")
    expect(table.locator("tr:has(td:text-is('kubeconfig'))")).to_contain_text("[secret]")
    plain = [k for k, v in outputs.items() if not v.secret and isinstance(v.value, str) and v.value]
    for k in plain:
        expect(table.locator(f"tr:has(td:text-is('{k}'))")).to_contain_text(str(outputs[k].value)[:40])
    assert key[:40] not in vic.content() and key[:40] not in str(env.service.outputs(SITE))
