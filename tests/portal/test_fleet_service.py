"""The portal over the real fleet service (edgefm.ops.service) and its journal in an embedded PostgreSQL.

No worker runs here: what is checked is the portal's side of the contract — a rollout started from the form is
the service's own strategy, journaled and queued; its page renders the service's views; approvals by the
starter are refused by the portal and by the service; previews are queued; the audit log is the service's.
"""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edgefm.portal.server import build
from edgefm.portal.settings import PortalSettings
from tests.portal.conftest import csrf_of, make_repo, sign_in

# The fleet operations service lands beside the portal; until both are in one checkout this module has nothing
# to run against (the in-memory service in fakes.py keeps the same contract for the other portal tests).
ops_database = pytest.importorskip("edgefm.ops.database")
ops_service = pytest.importorskip("edgefm.ops.service")
SITES = ["site-bridge-north", "site-bridge-south", "site-harbor-ocp", "site-viaduct-cpu"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    data = Path(tempfile.mkdtemp(prefix="edgefm-portal-pg-", dir="/tmp"))
    data.chmod(0o755)
    server = ops_database.EmbeddedPostgres(data, _free_port())
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def portal(database: str, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, Any]]:
    repo = make_repo(tmp_path / "fleet")
    service = ops_service.FleetService(database, repo)
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
