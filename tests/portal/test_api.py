"""The portal over HTTP: sign-in, CSRF, every page and action, roles, redaction, live events."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from edgefm.portal.app import server_ms
from edgefm.portal.contracts import SiteStatus
from tests.portal.conftest import PortalUnderTest, csrf_of
from tests.portal.fakes import SECRET_VALUE

Client = Callable[[str], TestClient]
SITES = ["site-bridge-north", "site-bridge-south", "site-harbor-ocp", "site-viaduct-cpu"]


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-stack="([^"]+)"', html)


def test_pages_need_sign_in(portal: PortalUnderTest) -> None:
    with TestClient(portal.app, base_url="http://127.0.0.1") as client:
        response = client.get("/", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")


def test_wrong_password_is_refused_and_audited(portal: PortalUnderTest) -> None:
    with TestClient(portal.app, base_url="http://127.0.0.1") as client:
        token = csrf_of(client)
        response = client.post("/login", data={"username": "olga", "password": "nope", "csrftoken": token})
        assert response.status_code == 401
        assert "wrong username or password" in response.text
        assert client.get("/", follow_redirects=False).status_code == 303
    entries = portal.service.audit_log(10)
    assert (entries[0].actor, entries[0].action, entries[0].result[:6]) == ("olga", "login", "denied")


def test_every_form_needs_the_csrf_token(client_for: Client) -> None:
    client = client_for("olga")
    for path in ("/onboard", "/changes", "/rollouts", "/logout", "/sites/site-bridge-north/preview"):
        response = client.post(path, data={"name": "x"})
        assert response.status_code == 403, path
        assert "csrf" in response.text.lower()
    # The login form too, even before any cookie exists.
    with TestClient(client.app, base_url="http://127.0.0.1") as fresh:
        assert fresh.post("/login", data={"username": "olga", "password": "demo-olga"}).status_code == 403


def test_inventory_shows_each_site_and_filters_by_selector(client_for: Client, portal: PortalUnderTest) -> None:
    now = datetime.now(UTC)
    portal.status.values["site-bridge-north"] = SiteStatus("healthy", "5/5 workloads ready", (), "1.0.0", now)
    portal.status.values["site-harbor-ocp"] = SiteStatus(
        "degraded", "triton 0/2 available", ("Deployment/triton: spec.replicas",), "1.0.0", now
    )
    client = client_for("vic")
    page = client.get("/")
    assert page.status_code == 200
    assert rows(page.text) == SITES
    north = page.text.split('data-stack="site-bridge-north"')[1].split("</tr>")[0]
    assert "tier=production" in north and "gpu, finetune, production" in north
    assert "bridge-defect-vit 1.0.0" in north and "healthy" in north
    harbor = page.text.split('data-stack="site-harbor-ocp"')[1].split("</tr>")[0]
    assert "drifted (1)" in harbor and "degraded" in harbor
    south = page.text.split('data-stack="site-bridge-south"')[1].split("</tr>")[0]
    assert "bridge-defect-vit 1.1.0" in south  # the canary profile's version
    assert rows(client.get("/", params={"selector": "tier=production"}).text) == [
        "site-bridge-north",
        "site-harbor-ocp",
    ]
    assert rows(client.get("/", params={"selector": "accelerator in (gpu),wave!=3"}).text) == [
        "site-bridge-north",
        "site-bridge-south",
    ]
    assert rows(client.get("/", params={"selector": "!finetune"}).text) == ["site-viaduct-cpu"]
    bad = client.get("/", params={"selector": "tier=="})
    assert bad.status_code == 400 and "selector term &#39;tier==&#39;" in bad.text
    assert server_ms(page.headers["server-timing"]) > 0 and server_ms(page.headers["server-timing"], "cpu") > 0


def test_site_page_shows_who_set_each_value_and_no_secret(client_for: Client, portal: PortalUnderTest) -> None:
    client = client_for("olga")
    run = client.post("/sites/site-bridge-south/preview", data={"csrftoken": csrf_of(client)}, follow_redirects=False)
    assert run.status_code == 303
    run_id = run.headers["location"].rsplit("/", 1)[1]
    _wait_events(portal, run_id, "run.succeeded")
    assert "Not recorded yet" in client.get("/sites/site-bridge-south").text  # a preview records no outputs
    portal.service.record_update("site-bridge-south")
    page = client.get("/sites/site-bridge-south").text

    def source(key: str) -> str:
        row = page.split(f'<tr data-key="{key}">')[1].split("</tr>")[0]
        found: list[str] = re.findall(r'class="source[^"]*">([^<]+)<', row)
        return found[0]

    assert source("serving.replicas") == "override"
    assert source("model.version") == "profile:canary"
    assert source("gpuOperator.enabled") == "profile:gpu"
    assert source("storage.sizeGi") == "defaults"
    assert "http://triton.site-bridge-south.svc:8000" in page  # a plain output is shown
    assert "Deployment::triton" in page and "spec.template.spec.containers[0].image" in page  # the preview diff
    assert "Deployment triton has no team label" in page  # the preview's guardrail findings
    assert SECRET_VALUE not in page and "[secret]" in page
    events = client.get(f"/runs/{run_id}").text
    assert "secretAccessKey" in events and SECRET_VALUE not in events


def _wait_events(portal: PortalUnderTest, run_id: str, kind: str) -> None:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(e.kind == kind for e in portal.service.events(run_id)):
            return
        time.sleep(0.02)
    raise AssertionError(f"{run_id} never reached {kind}")


ONBOARD = {
    "name": "bridge-east",
    "region": "eu-central-1",
    "jurisdiction": "DE",
    "network": "10.40.0.0/24",
    "cluster_mode": "k3s",
    "cluster_distribution": "k3s",
    "label_tier": "production",
    "label_accelerator": "cpu",
    "label_workload": "bridge-inspection",
    "label_wave": "2",
    "node_name_0": "n1",
    "node_address_0": "10.40.0.11",
    "node_name_1": "n2",
    "node_address_1": "10.40.0.12",
    "node_name_2": "n3",
    "node_address_2": "10.40.0.13",
}


def test_onboarding_errors_stand_beside_their_fields(client_for: Client, portal: PortalUnderTest) -> None:
    client = client_for("olga")
    bad = {
        **ONBOARD,
        "name": "Bridge_East",
        "jurisdiction": "XX",
        "node_address_1": "10.99.0.12",
        "node_gpus_2": "2",
        "csrftoken": csrf_of(client),
    }
    response = client.post("/onboard", data=bad)
    assert response.status_code == 422
    errors = dict(re.findall(r'data-field="([^"]+)">([^<]+)<', response.text))
    assert "must be a DNS label" in errors["name"]
    assert "unknown jurisdiction" in errors["jurisdiction"]
    assert "gpuModel" in errors["node_gpu_model_2"]  # a node-level check stands beside the key to change
    assert not (portal.repo / "stacks" / "Pulumi.site-Bridge_East.yaml").exists()
    # Placement problems land beside the label that causes them.
    gpu_less = {**ONBOARD, "label_accelerator": "gpu", "label_finetune": "enabled", "csrftoken": csrf_of(client)}
    response = client.post("/onboard", data=gpu_less)
    assert response.status_code == 422
    assert "no node has GPUs" in response.text
    taken = {**ONBOARD, "name": "bridge-north", "network": "10.20.0.0/24", "csrftoken": csrf_of(client)}
    for i in range(3):
        taken[f"node_address_{i}"] = f"10.20.0.{11 + i}"
    assert "already exists" in client.post("/onboard", data=taken).text


def test_onboarding_commits_on_a_branch_and_previews(client_for: Client, portal: PortalUnderTest) -> None:
    client = client_for("olga")
    response = client.post("/onboard", data={**ONBOARD, "csrftoken": csrf_of(client)}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert "onboarded=site-bridge-east" in response.headers["location"]
    path = portal.repo / "stacks" / "Pulumi.site-bridge-east.yaml"
    doc = yaml.safe_load(path.read_text())["config"]["edgefm:site"]
    assert doc["labels"]["accelerator"] == "cpu" and len(doc["nodes"]) == 3
    git = ["git", "-C", str(portal.repo)]
    shown = subprocess.run(
        [*git, "show", "onboard/site-bridge-east:stacks/Pulumi.site-bridge-east.yaml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown == path.read_text()
    author = subprocess.run(
        [*git, "log", "-1", "--format=%an", "onboard/site-bridge-east"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert author == "olga"
    # The checked-out branch did not move.
    assert (
        subprocess.run(
            [*git, "rev-parse", "--abbrev-ref", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "main"
    )
    run_id = response.headers["location"].split("/runs/")[1].split("?")[0]
    _wait_events(portal, run_id, "run.succeeded")
    assert [e.stack for e in portal.service.events(run_id) if e.kind == "site.succeeded"] == ["site-bridge-east"]
    # `edgefm validate`'s models accept the file except for the credential a real k3s site needs.
    from edgefm.portal.fleetview import FleetView

    entry = FleetView(portal.repo).site("site-bridge-east")
    assert entry is not None and entry.resolved is not None
    assert entry.problems == ("site-bridge-east: edgefm:sshPrivateKey: required to bootstrap k3s over SSH",)
    assert "site-bridge-east" in client.get("/").text


def test_change_preview_is_a_job_over_exactly_the_affected_sites(client_for: Client, portal: PortalUnderTest) -> None:
    client = client_for("olga")
    before = (portal.repo / "policies" / "placement.yaml").read_text()
    data = {"layer": "defaults", "key": "model.version", "value": '"1.2.0"', "csrftoken": csrf_of(client)}
    queued = client.post("/changes", data=data, follow_redirects=False)
    # The page answers at once with the run; the preview runs as a job.
    assert queued.status_code == 303, queued.text
    run_id = queued.headers["location"].rsplit("/", 1)[1]
    _wait_events(portal, run_id, "run.succeeded")
    page = client.get(f"/changes/{run_id}").text
    affected = re.findall(r'<section class="site-change" data-stack="([^"]+)"', page)
    # The canary profile pins 1.1.0 for bridge-south, so the default reaches only the other three.
    assert affected == ["site-bridge-north", "site-harbor-ocp", "site-viaduct-cpu"]
    assert "3 site(s) affected, 3 previewed" in page and "defaults: model.version = &#34;1.2.0&#34;" in page
    north = page.split('data-stack="site-bridge-north"')[1].split("</section>")[0]
    assert (
        '<td>model.version</td><td class="before"><code>"1.0.0"</code></td><td class="after"><code>"1.2.0"</code>'
        in north
    )
    assert "Deployment::triton" in north and "resolved profile changed" in north  # its resource diff, and why
    # The polled fragment tells htmx to stop once the run has ended.
    assert client.get(f"/changes/{run_id}/sites").status_code == 286
    assert (portal.repo / "policies" / "placement.yaml").read_text() == before  # nothing changed
    profile = {"layer": "gpu", "key": "serving.replicas", "value": "3", "csrftoken": csrf_of(client)}
    quiet = client.post("/changes", data=profile, follow_redirects=False).headers["location"].rsplit("/", 1)[1]
    _wait_events(portal, quiet, "run.succeeded")
    # bridge-south overrides serving.replicas itself; production's replicas outrank the gpu profile's.
    assert "0 site(s) affected" in client.get(f"/changes/{quiet}").text
    bad = client.post("/changes", data={**data, "value": '"latest"'})
    assert bad.status_code == 422 and "floats; pin an exact version" in bad.text
    unknown = client.post("/changes", data={**data, "key": "serving.colour"})
    assert unknown.status_code == 422 and "not a profile key" in unknown.text
    # Previewing on the engine is an operator's action: a viewer sees the form and is refused the job.
    viewer = client_for("vic")
    refused = viewer.post("/changes", data={**data, "csrftoken": csrf_of(viewer)})
    assert refused.status_code == 403 and "vic is not operator" in refused.text
    assert viewer.get(f"/changes/{run_id}").status_code == 200


def test_drift_check_from_the_portal_flags_the_site(client_for: Client, portal: PortalUnderTest) -> None:
    portal.service.drifted["site-viaduct-cpu"] = [
        {
            "urn": "urn:pulumi:site-viaduct-cpu::edgefm::kubernetes:core/v1:ConfigMap::triton-config",
            "type": "kubernetes:core/v1:ConfigMap",
            "op": "update",
            "keys": ["data"],
        }
    ]
    olga, vic = client_for("olga"), client_for("vic")
    assert 'id="check-drift"' not in vic.get("/").text
    assert vic.post("/drift", data={"csrftoken": csrf_of(vic)}).status_code == 403
    queued = olga.post("/drift", data={"selector": "tier=production", "csrftoken": csrf_of(olga)})
    run_id = queued.url.path.rsplit("/", 1)[1]
    _wait_events(portal, run_id, "run.succeeded")
    assert sorted(str(e.stack) for e in portal.service.events(run_id) if e.kind == "site.succeeded") == [
        "site-bridge-north",
        "site-harbor-ocp",
    ]
    site = olga.post("/sites/site-viaduct-cpu/drift", data={"csrftoken": csrf_of(olga)}, follow_redirects=False)
    assert site.status_code == 303
    _wait_events(portal, site.headers["location"].rsplit("/", 1)[1], "run.succeeded")
    page = vic.get("/").text
    viaduct = page.split('data-stack="site-viaduct-cpu"')[1].split("</tr>")[0]
    north = page.split('data-stack="site-bridge-north"')[1].split("</tr>")[0]
    south = page.split('data-stack="site-bridge-south"')[1].split("</tr>")[0]
    assert "drifted (1)" in viaduct and "ConfigMap/triton-config: data" in viaduct
    assert '<span class="badge ok">none</span>' in north  # checked, nothing drifted
    assert '<td class="drift">-</td>' in south  # never checked
    assert "ConfigMap/triton-config: data" in vic.get("/sites/site-viaduct-cpu").text


def test_canary_rollout_with_approval_and_live_events(client_for: Client, portal: PortalUnderTest) -> None:
    olga, arno = client_for("olga"), client_for("arno")
    form = {
        "stacks": SITES,
        "canary": "tier=canary",
        "group_by": "wave",
        "max_concurrency": "1",
        "max_failures": "0",
        "min_success_time": "0",
        "progress_deadline": "600",
        "approve_each_group": "on",
        "csrftoken": csrf_of(olga),
    }
    started = olga.post("/rollouts", data=form, follow_redirects=False)
    assert started.status_code == 303, started.text
    rollout_id = started.headers["location"].rsplit("/", 1)[1]
    r = portal.service.rollout(rollout_id)
    assert r is not None and [g.name for g in r.groups] == ["canary", "wave=1", "wave=2", "wave=3"]
    assert r.groups[0].stacks == ["site-bridge-south"]
    assert r.strategy.approve == ["wave=1", "wave=2", "wave=3"]
    assert portal.service.wait_state(rollout_id, {"waiting-approval"}) == "waiting-approval"
    # The starter cannot approve, whatever their role.
    own = olga.post(f"/rollouts/{rollout_id}/approve", data={"csrftoken": csrf_of(olga)})
    assert own.status_code == 403
    assert "not approver" in own.text
    page = arno.get(f"/rollouts/{rollout_id}").text
    assert 'id="approve"' in page
    for group in ("wave=1", "wave=2", "wave=3"):
        portal.service.wait_group(rollout_id, group, "waiting-approval")
        ok = arno.post(f"/rollouts/{rollout_id}/approve", data={"csrftoken": csrf_of(arno)}, follow_redirects=False)
        assert ok.status_code == 303
    assert portal.service.wait_state(rollout_id, {"succeeded"}) == "succeeded"
    # The stream replays the journal with sequence numbers; Last-Event-ID resumes after the last one seen.
    with arno.stream("GET", f"/runs/{rollout_id}/stream") as stream:
        body = "".join(stream.iter_text())
    ids = [int(i) for i in re.findall(r"^id: (\d+)", body, re.M)]
    assert ids == list(range(1, len(ids) + 1)) and len(ids) == len(portal.service.events(rollout_id))
    assert "event: close" in body and 'data-state="succeeded"' in body
    with arno.stream("GET", f"/runs/{rollout_id}/stream", headers={"Last-Event-ID": "10"}) as stream:
        resumed = "".join(stream.iter_text())
    assert [int(i) for i in re.findall(r"^id: (\d+)", resumed, re.M)] == ids[10:]
    with arno.stream("GET", f"/runs/{rollout_id}/stream?after=12") as stream:
        assert [int(i) for i in re.findall(r"^id: (\d+)", "".join(stream.iter_text()), re.M)] == ids[12:]
    assert SECRET_VALUE not in body and "[secret]" in body
    audit = [(a.actor, a.action, a.result.split(":")[0]) for a in portal.service.audit_log(50)]
    assert ("olga", "rollout.start", "queued") in audit
    assert ("olga", "rollout.approve", "denied") in audit
    assert sum(1 for a in audit if a[:2] == ("arno", "rollout.approve")) == 3


def test_a_rollout_needs_a_canary(client_for: Client, portal: PortalUnderTest) -> None:
    olga = client_for("olga")
    form = {"stacks": SITES, "canary": "tier=lab", "max_failures": "ten", "csrftoken": csrf_of(olga)}
    refused = olga.post("/rollouts", data=form)
    assert refused.status_code == 422
    errors = dict(re.findall(r'data-field="([^"]+)">([^<]+)<', refused.text))
    assert "pattern" in errors["max_failures"]
    form["max_failures"] = "10%"
    refused = olga.post("/rollouts", data=form)
    errors = dict(re.findall(r'data-field="([^"]+)">([^<]+)<', refused.text))
    assert "no chosen site matches" in errors["canary"]
    assert portal.service.rollouts() == []


def test_service_refuses_the_starters_approval_too(portal: PortalUnderTest) -> None:
    """Defence in depth: the service's own check, not only the portal's."""
    from tests.portal.fakes import OpsStrategy

    strategy = OpsStrategy(stacks=SITES, canary=["site-bridge-south"], approve=["*"])
    rid = portal.service.start_rollout(strategy, "arno")
    portal.service.wait_state(rid, {"waiting-approval"})
    try:
        portal.service.approve(rid, "arno")
    except PermissionError as exc:
        assert "cannot approve" in str(exc)
    else:
        raise AssertionError("the starter approved their own rollout")
    portal.service.abort(rid, "arno")
    assert portal.service.wait_state(rid, {"aborted"}) == "aborted"


def test_pause_resume_abort(client_for: Client, portal: PortalUnderTest) -> None:
    olga = client_for("olga")
    form = {"stacks": SITES, "csrftoken": csrf_of(olga)}
    portal.service.step_s = 0.2
    rollout_id = olga.post("/rollouts", data=form, follow_redirects=False).headers["location"].rsplit("/", 1)[1]
    assert olga.post(f"/rollouts/{rollout_id}/pause", data={"csrftoken": csrf_of(olga)}).status_code == 200
    assert portal.service.wait_state(rollout_id, {"paused"}) == "paused"
    olga.post(f"/rollouts/{rollout_id}/resume", data={"csrftoken": csrf_of(olga)})
    olga.post(f"/rollouts/{rollout_id}/abort", data={"csrftoken": csrf_of(olga)})
    assert portal.service.wait_state(rollout_id, {"aborted"}) == "aborted"
    kinds = [e.kind for e in portal.service.events(rollout_id)]
    assert kinds.index("rollout.paused-requested") < kinds.index("rollout.running-requested")
    assert kinds.index("rollout.running-requested") < kinds.index("rollout.aborted")
    # Acting on a finished rollout is refused by the service, with its message.
    late = olga.post(f"/rollouts/{rollout_id}/pause", data={"csrftoken": csrf_of(olga)})
    assert late.status_code == 403 and "has ended (aborted)" in late.text


def test_viewer_is_refused_operator_actions(client_for: Client, portal: PortalUnderTest) -> None:
    vic = client_for("vic")
    token = csrf_of(vic)
    refused = vic.post("/rollouts", data={"stacks": SITES, "csrftoken": token})
    assert refused.status_code == 403 and "vic is not operator" in refused.text
    assert vic.post("/sites/site-bridge-north/preview", data={"csrftoken": token}).status_code == 403
    assert vic.post("/onboard", data={**ONBOARD, "csrftoken": token}).status_code == 403
    assert vic.get("/audit").status_code == 403
    assert not (portal.repo / "stacks" / "Pulumi.site-bridge-east.yaml").exists()
    assert portal.service.rollouts() == []
    denied = [a for a in portal.service.audit_log(20) if a.actor == "vic" and a.result.startswith("denied")]
    assert {a.action for a in denied} >= {"rollout.start", "preview.start", "onboard"}


def test_roles_follow_site_groups(portal: PortalUnderTest) -> None:
    from edgefm.portal.access import Principal

    canary_team = Principal("cat", ("canary-team",), "oidc")
    access = portal.app  # noqa: F841 - the policy is read from the repo's access file below
    from edgefm.portal.access import Access, load_access

    policy = Access(load_access(portal.settings.access_file))
    assert policy.can(canary_team, "approver", {"tier": "canary"})
    assert not policy.can(canary_team, "operator", {"tier": "production"})
    assert policy.can(canary_team, "viewer", {"tier": "production"})
    assert not policy.can(canary_team, "viewer", {"tier": "lab"})


def test_audit_log_and_registry(client_for: Client) -> None:
    alice = client_for("alice")
    page = alice.get("/audit").text
    assert "alice" in page and "login" in page
    registry = alice.get("/registry").text
    assert "canary → 1.1.0" in registry
    version = registry.split('data-version="1.1.0"')[1].split("</tr>")[0]
    assert "site-bridge-south" in version


def test_sign_in_returns_only_to_a_path_on_the_portal(portal: PortalUnderTest) -> None:
    for target, expected in (
        ("/rollouts", "/rollouts"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
    ):
        with TestClient(portal.app, base_url="http://127.0.0.1") as client:
            data = {"username": "vic", "password": "demo-vic", "next": target, "csrftoken": csrf_of(client)}
            response = client.post("/login", data=data, follow_redirects=False)
            assert response.headers["location"] == expected, target


def test_a_rollout_stream_needs_viewer_on_its_sites(repo: Path) -> None:
    from tests.portal.conftest import build_portal, sign_in
    from tests.portal.fakes import OpsStrategy

    access = repo / "portal" / "access.yaml"
    access.write_text(
        access.read_text().replace(
            "{group: edgefm-viewers, role: viewer, siteGroup: all}",
            "{group: edgefm-viewers, role: viewer, siteGroup: canary}",
        )
    )
    portal = build_portal(repo)
    rid = portal.service.start_rollout(OpsStrategy(stacks=SITES, canary=["site-bridge-south"]), "olga")
    portal.service.wait_state(rid, {"succeeded"})
    with TestClient(portal.app, base_url="http://127.0.0.1") as vic:
        sign_in(vic, "vic")
        assert rows(vic.get("/").text) == ["site-bridge-south"]
        assert vic.get(f"/runs/{rid}/stream").status_code == 403
        assert vic.get(f"/rollouts/{rid}").status_code == 403
        # Events of a run are shown only for the sites one may view.
        preview = portal.service.start_preview(["site-bridge-north", "site-bridge-south"], "olga")
        _wait_events(portal, preview, "run.succeeded")
        page = vic.get(f"/runs/{preview}").text
        assert "site-bridge-south" in page and "site-bridge-north" not in page
