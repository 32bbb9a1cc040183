"""The portal over the real fleet service (edgefm.ops.service) and its journal in an embedded PostgreSQL.

No worker runs here: what is checked is the portal's side of the contract — a rollout started from the form is
the service's own strategy, journaled and queued; its page renders the service's views; approvals by the
starter, and second approvals, are refused by the service; previews, drift checks and change previews are
queued; the inventory and the site page read the journal (runs, findings, drift, outputs); the audit log is the
service's. Workers running these jobs on the real engine: tests/portal/test_engine_jobs.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from edgefm.ops import service as ops_service
from edgefm.ops.controller import SiteOutcome, site_outcome_rows
from edgefm.ops.journal import Batch
from edgefm.ops.queue import queue_site_runs
from edgefm.portal.server import build
from edgefm.portal.settings import PortalSettings
from tests.portal.conftest import csrf_of, make_repo, new_database, sign_in

SITES = ["site-bridge-north", "site-bridge-south", "site-harbor-ocp", "site-viaduct-cpu"]


@pytest.fixture
def portal(postgres: str, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, Any]]:
    repo = make_repo(tmp_path / "fleet")
    service = ops_service.FleetService(new_database(postgres), repo)
    settings = PortalSettings(
        repo=repo, access_file=repo / "portal" / "access.yaml", users_file=repo / "portal" / "users.demo.yaml"
    )
    app = build(settings, service)
    with TestClient(app, base_url="http://127.0.0.1") as olga, TestClient(app, base_url="http://127.0.0.1") as arno:
        yield sign_in(olga, "olga"), sign_in(arno, "arno"), service
    service.close()


def test_rollout_from_the_form_is_the_services_strategy(portal: tuple[TestClient, TestClient, Any]) -> None:
    olga, arno, service = portal
    form = {
        "stacks": SITES,
        "canary": "tier=canary",
        "max_failures": "25%",
        "approve_each_group": "on",
        "csrftoken": csrf_of(olga),
    }
    started = olga.post("/rollouts", data=form, follow_redirects=False)
    assert started.status_code == 303, started.text
    rollout_id = started.headers["location"].rsplit("/", 1)[1]
    view = service.rollout(rollout_id)
    assert view is not None and view.actor == "olga" and view.strategy is not None
    assert view.strategy.canary == ["site-bridge-south"] and view.strategy.max_failures == "25%"
    assert [g.name for g in view.groups] == ["canary", "wave=1", "wave=2", "wave=3"]
    page = olga.get(f"/rollouts/{rollout_id}").text
    assert "started by olga" in page and "wave=3" in page and "another approver" in page
    assert olga.post(f"/rollouts/{rollout_id}/approve", data={"csrftoken": csrf_of(olga)}).status_code == 403
    approved = arno.post(f"/rollouts/{rollout_id}/approve", data={"csrftoken": csrf_of(arno)}, follow_redirects=False)
    assert approved.status_code == 303, approved.text
    assert "approved by arno" in arno.get(f"/rollouts/{rollout_id}").text
    # The group waits for the controller to pick the approval up: a second one is refused, with who gave the first.
    again = arno.post(f"/rollouts/{rollout_id}/approve", data={"csrftoken": csrf_of(arno)})
    assert again.status_code == 403 and "group wave=1 of rollout" in again.text
    assert "already approved (by arno)" in again.text
    assert olga.post(f"/rollouts/{rollout_id}/pause", data={"csrftoken": csrf_of(olga)}).status_code == 200
    listing = olga.get("/rollouts").text
    assert rollout_id in listing
    # A strategy the service refuses comes back beside its field.
    bad = olga.post("/rollouts", data={**form, "max_concurrency": "0", "csrftoken": csrf_of(olga)})
    assert bad.status_code == 422
    assert "maxConcurrency must be at least 1" in dict(re.findall(r'data-field="([^"]+)">([^<]+)<', bad.text)).get(
        "max_concurrency", ""
    )
    actions = [(a.actor, a.action) for a in service.audit_log(20)]
    assert ("olga", "rollout.start") in actions and ("arno", "rollout.approve") in actions
    assert ("olga", "rollout.approve") in actions  # the portal's refusal, in the service's audit table


def test_preview_is_queued_and_its_run_page_renders(portal: tuple[TestClient, TestClient, Any]) -> None:
    olga, _, service = portal
    queued = olga.post("/sites/site-bridge-north/preview", data={"csrftoken": csrf_of(olga)}, follow_redirects=False)
    assert queued.status_code == 303, queued.text
    run_id = queued.headers["location"].rsplit("/", 1)[1]
    assert olga.get(f"/runs/{run_id}").status_code == 200
    runs = service.site_runs("site-bridge-north")
    assert [(r.run_id, r.operation) for r in runs] == [(run_id, "preview")]
    site = olga.get("/sites/site-bridge-north").text
    assert run_id in site and "profile:production" in site
    assert olga.get("/").status_code == 200


def _journal_run(service: Any, stack: str, operation: str, **outcome: Any) -> None:
    """One finished operation on a stack, journaled as a worker journals it."""
    run_id = service.journal.create_run(operation, "olga", [stack])
    batch = Batch()
    (task,) = queue_site_runs(batch, run_id, [stack], operation, "olga")
    service.journal.write(batch)
    done = Batch()
    site_outcome_rows(task, SiteOutcome(ok=True, phase=operation, **outcome), done)
    service.journal.write(done, settle_run=run_id)


def test_inventory_and_site_page_read_the_journal(portal: tuple[TestClient, TestClient, Any]) -> None:
    olga, _, service = portal
    urn = "urn:pulumi:site-harbor-ocp::edgefm::kubernetes:apps/v1:Deployment::triton"
    step = {"urn": urn, "type": "kubernetes:apps/v1:Deployment", "op": "update"}
    _journal_run(
        service,
        "site-harbor-ocp",
        "update",
        preview_seconds=1.0,
        steps=[{**step, "keys": ["spec.replicas"]}],
        advisories=["[labels-present] Deployment triton has no team label"],
        outputs={"tritonUrl": "http://10.0.0.5:8000", "registryKey": "[secret]", "kubeconfig": "apiVersion: v1"},
    )
    _journal_run(service, "site-harbor-ocp", "drift", preview_seconds=0.5, drift=[{**step, "keys": ["spec.replicas"]}])
    _journal_run(service, "site-bridge-north", "drift", preview_seconds=0.5, drift=[])
    page = olga.get("/").text
    harbor = page.split('data-stack="site-harbor-ocp"')[1].split("</tr>")[0]
    assert "drift" in harbor and "drifted (1)" in harbor and "Deployment/triton: spec.replicas" in harbor
    assert 'title="[labels-present] Deployment triton has no team label">1<' in harbor
    north = page.split('data-stack="site-bridge-north"')[1].split("</tr>")[0]
    assert '<span class="badge ok">none</span>' in north
    site = olga.get("/sites/site-harbor-ocp").text
    assert "http://10.0.0.5:8000" in site and "apiVersion" not in site  # outputs, secrets masked
    assert "Deployment::triton" in site and "spec.replicas" in site  # the last judged preview's diff
    assert "Deployment/triton: spec.replicas" in site.split('<section class="drift">')[1]


def test_drift_and_change_previews_are_queued_jobs(portal: tuple[TestClient, TestClient, Any]) -> None:
    olga, _, service = portal
    drift = olga.post("/sites/site-viaduct-cpu/drift", data={"csrftoken": csrf_of(olga)}, follow_redirects=False)
    assert drift.status_code == 303, drift.text
    drift_id = drift.headers["location"].rsplit("/", 1)[1]
    assert [(r.run_id, r.operation) for r in service.site_runs("site-viaduct-cpu")] == [(drift_id, "drift")]
    form = {"layer": "defaults", "key": "model.version", "value": '"1.2.0"', "csrftoken": csrf_of(olga)}
    change = olga.post("/changes", data=form, follow_redirects=False)
    assert change.status_code == 303, change.text
    change_id = change.headers["location"].rsplit("/", 1)[1]
    view = service.change_preview(change_id)
    assert view is not None and view.state == "queued" and view.change == 'defaults: model.version = "1.2.0"'
    assert "version: 1.2.0" in view.placement
    page = olga.get(f"/changes/{change_id}").text
    assert "0 site(s) affected" in page and "finding the affected sites" in page
    with service.journal.engine.connect() as conn:
        jobs = {tuple(r) for r in conn.execute(text("SELECT task_name, lock FROM procrastinate_jobs"))}
    assert ("edgefm:edgefm.change", None) in jobs and ("edgefm:edgefm.site", "stack:site-viaduct-cpu") in jobs
    actions = [(a.actor, a.action) for a in service.audit_log(10)]
    assert ("olga", "drift.start") in actions and ("olga", "change.preview") in actions
