"""End to end in Debian's chromium (Playwright drives /usr/bin/chromium by path; it never downloads a browser).

The portal runs under uvicorn on 127.0.0.1 over a copy of the sample fleet and the in-memory fleet service;
events reach the page over SSE through htmx. Screenshots of the main pages go to $EDGEFM_PORTAL_SCREENSHOTS
(`make portal-screenshots` sets docs/portal) or to the test's temporary directory.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, expect

from edgefm.portal.contracts import SiteStatus
from tests.portal.browsing import browser, free_port, serve, shots, signed_in, stop
from tests.portal.conftest import PortalUnderTest, build_portal, make_repo

__all__ = ["browser", "shots"]  # fixtures


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[PortalUnderTest, str]]:
    portal = build_portal(make_repo(tmp_path / "fleet"), step_s=0.25)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(portal.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the portal did not start")
        time.sleep(0.05)
    try:
        yield portal, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_onboard_a_site_and_see_its_preview(browser: Browser, live: tuple[PortalUnderTest, str], shots: Path) -> None:
    portal, base = live
    page = signed_in(browser, base, "olga")
    page.click("nav >> text=Onboard")
    page.fill("input[name=name]", "bridge-east")
    page.fill("input[name=region]", "eu-central-1")
    page.fill("input[name=jurisdiction]", "ZZ")
    page.fill("input[name=network]", "10.40.0.0/24")
    page.select_option("select[name=label_tier]", "production")
    page.select_option("select[name=label_accelerator]", "cpu")
    page.select_option("select[name=label_workload]", "bridge-inspection")
    page.select_option("select[name=label_wave]", "2")
    for i in range(3):
        page.fill(f"input[name=node_name_{i}]", f"n{i + 1}")
        page.fill(f"input[name=node_address_{i}]", f"10.40.0.{11 + i}")
    page.click("text=Validate, commit and preview")
    # The error stands beside its field, and the rest of the form is kept.
    error = page.locator('.field-error[data-field="jurisdiction"]')
    expect(error).to_contain_text("unknown jurisdiction 'ZZ'")
    expect(page.locator("input[name=node_address_2]")).to_have_value("10.40.0.13")
    page.screenshot(path=str(shots / "onboard.png"), full_page=True)
    page.fill("input[name=jurisdiction]", "DE")
    page.click("text=Validate, commit and preview")
    expect(page.locator("#onboarded")).to_contain_text("onboard/site-bridge-east")
    # The preview's events arrive live over SSE until the run ends.
    expect(page.locator('#events li[data-kind="run.succeeded"]')).to_have_count(1, timeout=20_000)
    expect(page.locator('#events li[data-kind="site.succeeded"]')).to_contain_text("site-bridge-east")
    assert (portal.repo / "stacks" / "Pulumi.site-bridge-east.yaml").exists()
    page.goto("/sites/site-bridge-east")
    expect(page.locator("table.diff")).to_contain_text("Deployment::triton")
    expect(page.locator('tr[data-key="serving.replicas"] td.source')).to_have_text("profile:production")
    page.screenshot(path=str(shots / "site.png"), full_page=True)


def test_canary_rollout_to_completion(browser: Browser, live: tuple[PortalUnderTest, str], shots: Path) -> None:
    portal, base = live
    olga = signed_in(browser, base, "olga")
    olga.click("nav >> text=Rollouts")
    olga.click("text=Start rollout")
    olga.wait_for_url(f"{base}/rollouts/rollout-*")
    rollout_id = olga.url.rsplit("/", 1)[1]
    # The canary group runs, then the rollout waits; its starter sees no approve button.
    expect(olga.locator("#state .badge")).to_have_text("waiting-approval", timeout=20_000)
    expect(olga.locator("#approve")).to_have_count(0)
    expect(olga.locator(".note")).to_contain_text("another approver")
    olga.screenshot(path=str(shots / "rollout-waiting.png"), full_page=True)
    arno = signed_in(browser, base, "arno")
    for _ in range(3):
        arno.goto(f"/rollouts/{rollout_id}")
        expect(arno.locator("#state .badge")).to_have_text("waiting-approval", timeout=20_000)
        arno.click("#approve")
        arno.wait_for_url(f"{base}/rollouts/{rollout_id}")
    # Olga's page never reloaded: state and events kept arriving over the stream.
    expect(olga.locator("#state .badge")).to_have_text("succeeded", timeout=30_000)
    expect(olga.locator('#events li[data-kind="rollout.succeeded"]')).to_have_count(1)
    seqs = [int(s) for s in olga.locator("#events li").evaluate_all("els => els.map(e => e.dataset.seq)")]
    assert seqs == list(range(1, len(portal.service.events(rollout_id)) + 1))  # every event once, in order
    assert "s3cr3t" not in olga.content()
    olga.screenshot(path=str(shots / "rollout.png"), full_page=True)


def test_drift_is_flagged(browser: Browser, live: tuple[PortalUnderTest, str], shots: Path) -> None:
    portal, base = live
    now = datetime.now(UTC)
    for stack in ("site-bridge-north", "site-bridge-south", "site-viaduct-cpu"):
        portal.status.values[stack] = SiteStatus("healthy", "all workloads ready", (), None, now)
    portal.status.values["site-harbor-ocp"] = SiteStatus(
        "degraded", "triton: 1/2 replicas available", ("Deployment/triton: spec.replicas 2 → 1",), None, now
    )
    page = signed_in(browser, base, "vic")
    row = page.locator('tr[data-stack="site-harbor-ocp"]')
    expect(row.locator("td.drift")).to_contain_text("drifted (1)")
    # No drift check has run there: the cluster watcher reports health, not the absence of drift.
    expect(page.locator('tr[data-stack="site-bridge-north"] td.drift')).to_have_text("-")
    page.screenshot(path=str(shots / "inventory.png"), full_page=True)
    page.fill("input[name=selector]", "tier=production")
    page.click("text=Filter")
    expect(page.locator("tbody tr")).to_have_count(2)
    row.locator("a").click()
    expect(page.locator("section.drift")).to_contain_text("Deployment/triton: spec.replicas 2 → 1")


def test_a_viewer_is_refused_an_operators_action(
    browser: Browser, live: tuple[PortalUnderTest, str], shots: Path
) -> None:
    portal, base = live
    page = signed_in(browser, base, "vic")
    expect(page.locator("nav >> text=Onboard")).to_have_count(0)
    page.goto("/rollouts")
    page.click("text=Start rollout")
    expect(page.locator("#denied")).to_contain_text("vic is not operator")
    assert portal.service.rollouts() == []
    page.screenshot(path=str(shots / "refused.png"))


def test_change_preview_registry_and_audit_pages(
    browser: Browser, live: tuple[PortalUnderTest, str], shots: Path
) -> None:
    _, base = live
    page = signed_in(browser, base, "alice")
    page.click("nav >> text=Change preview")
    page.fill("input[name=value]", '"1.2.0"')
    page.click("text=Preview the change")
    # The page answers at once with the run, and fills in as each affected site's preview finishes.
    page.wait_for_url(f"{base}/changes/change-*")
    expect(page.locator("#plan-summary")).to_have_text("3 site(s) affected, 3 previewed", timeout=20_000)
    expect(page.locator('section[data-stack="site-bridge-north"] table.resource-diff')).to_contain_text("triton")
    expect(page.locator("section.site-change")).to_have_count(3)
    page.screenshot(path=str(shots / "change-preview.png"), full_page=True)
    page.click("nav >> text=Models")
    expect(page.locator('tr[data-version="1.1.0"]')).to_contain_text("site-bridge-south")
    page.screenshot(path=str(shots / "registry.png"), full_page=True)
    page.click("nav >> text=Audit")
    expect(page.locator("table.audit")).to_contain_text("change.preview")
    page.screenshot(path=str(shots / "audit.png"), full_page=True)


def test_a_reconnecting_page_resumes_where_it_was(browser: Browser, tmp_path: Path) -> None:
    """The portal restarts mid-rollout; the page's event stream reconnects with Last-Event-ID and shows every
    journal event exactly once."""
    portal = build_portal(make_repo(tmp_path / "fleet"), step_s=1.5)
    resumed_from: list[str] = []

    async def record(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/stream"):
            headers = dict(scope["headers"])
            # Where the stream resumes: the browser's Last-Event-ID, or the `after` the page keeps in its URL.
            after = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p).get("after")
            resumed_from.append(headers.get(b"last-event-id", b"").decode() or after or "")
        await portal.app(scope, receive, send)

    port = free_port()
    server = serve(record, port)
    base = f"http://127.0.0.1:{port}"
    try:
        page = signed_in(browser, base, "olga")
        page.goto("/rollouts")
        page.uncheck("input[name=approve_each_group]")
        page.click("text=Start rollout")
        page.wait_for_url(f"{base}/rollouts/rollout-*")
        rollout_id = page.url.rsplit("/", 1)[1]
        expect(page.locator('#events li[data-seq="4"]')).to_have_count(1, timeout=20_000)
        stop(server)  # the connection drops while the rollout goes on
        rollout = portal.service.rollout(rollout_id)
        assert rollout is not None and rollout.state == "running"
        time.sleep(1.5)
        server = serve(record, port)
        expect(page.locator("#state .badge")).to_have_text("succeeded", timeout=40_000)
        seqs = [int(s) for s in page.locator("#events li").evaluate_all("els => els.map(e => e.dataset.seq)")]
        assert seqs == list(range(1, len(portal.service.events(rollout_id)) + 1))
        assert any(v.isdigit() and int(v) >= 4 for v in resumed_from), resumed_from
    finally:
        stop(server)
