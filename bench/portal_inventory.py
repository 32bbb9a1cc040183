"""Portal inventory render time at fleet scale over the real fleet service: the fleet page over N generated
sites, each with a journaled history, in the embedded PostgreSQL; server time per request.

Two ways to read the journal are timed side by side, on the same database, in alternating requests:
- `per-site`: what the inventory did before the fleet-wide read: for every site, its run history
  (`FleetService.site_runs`) and its newest preview (`Journal.preview`): two queries per site.
- `one query`: `FleetService.site_summaries`: every site's newest run, newest judged preview with its findings
  and newest drift check in one query (window functions over the site runs).

Sites are generated from the two sample templates (GPU fine-tuning, CPU-only) with labels spread over the
placement vocabulary; each gets a history as workers journal it (`tests/portal/bigfleet.py`: preview, update,
drift check, preview, update — site runs with planned steps, findings, outputs and events). The first request
after start reads and resolves every stack file (the portal also warms this up in the background). Server time
is the portal's Server-Timing header: wall time, the request thread's CPU time (which a busy shared machine does
not inflate; the journal read runs on a worker thread, so its CPU is not in it), and the journal read's wall time.

    python bench/portal_inventory.py [--sites 1000] [--reps 31]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.testclient import TestClient

from edgefm.ops.database import EmbeddedPostgres
from edgefm.ops.journal import DRIFT_OPERATIONS, PREVIEW_OPERATIONS, SUCCEEDED
from edgefm.ops.service import FleetService, SiteRunView, _site_view
from edgefm.portal.app import server_ms
from edgefm.portal.server import build
from edgefm.portal.settings import PortalSettings
from tests.portal.bigfleet import journal_history, write_sites
from tests.portal.conftest import make_repo, sign_in


@dataclass(frozen=True)
class PerSiteSummary:
    last_run: SiteRunView | None
    last_preview: SiteRunView | None
    advisories: list[str]
    drift: list[dict[str, Any]]
    drift_checked_at: datetime | None


class PerSiteReads:
    """The fleet service, with the inventory's journal read done as it was before: per site, its run history
    (the query `FleetService.site_runs` makes) and its newest judged preview: two queries per site."""

    def __init__(self, service: FleetService, stacks: list[str]) -> None:
        self.service, self.stacks = service, stacks

    def __getattr__(self, name: str) -> Any:
        return getattr(self.service, name)

    def site_summaries(self, stacks: list[str] | None = None) -> dict[str, PerSiteSummary]:
        out = {}
        for stack in stacks if stacks is not None else self.stacks:
            rows = self.service.journal.site_runs(stack=stack, limit=500)  # newest first
            if not rows:
                continue
            judged = next((r for r in rows if r.operation in PREVIEW_OPERATIONS), None)
            preview = self.service.journal.preview(judged.id) if judged is not None else None
            if preview is None:
                judged = None
            check = next((r for r in rows if r.operation in DRIFT_OPERATIONS and r.state == SUCCEEDED), None)
            out[stack] = PerSiteSummary(
                _site_view(rows[0]),
                _site_view(judged) if judged is not None else None,
                [str(a) for a in preview.advisories] if preview is not None else [],
                list(check.drift or []) if check is not None and check.operation == "drift" else [],
                datetime.fromtimestamp(check.finished_at, UTC) if check is not None and check.finished_at else None,
            )
        return out


@contextmanager
def embedded_postgres() -> Iterator[str]:
    data = Path(tempfile.mkdtemp(prefix="edgefm-bench-pg-", dir="/tmp"))
    data.chmod(0o755)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = EmbeddedPostgres(data, port)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=31)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, embedded_postgres() as url:
        repo = make_repo(Path(tmp) / "fleet")
        stacks = write_sites(repo, args.sites - 4)  # plus the 4 sample sites
        service = FleetService(url, repo)
        t0 = time.perf_counter()
        written = journal_history(service.journal, stacks)
        took = time.perf_counter() - t0
        print(f"{len(stacks)} sites, {written} site runs journaled in {took:.1f} s; load {os.getloadavg()[0]:.1f}")
        settings = PortalSettings(
            repo=repo, access_file=repo / "portal" / "access.yaml", users_file=repo / "portal" / "users.demo.yaml"
        )
        per_site = PerSiteReads(service, stacks)
        apps = {"per-site": build(settings, per_site), "one query": build(settings, service)}
        clients = {name: TestClient(app, base_url="http://127.0.0.1") for name, app in apps.items()}
        timings: dict[str, list[str]] = {name: [] for name in apps}
        first: dict[str, float] = {}
        try:
            for name, client in clients.items():
                client.__enter__()
                sign_in(client, "alice")
                page = client.get("/")
                assert page.text.count('<tr data-stack="') == len(stacks), name
                first[name] = server_ms(page.headers["server-timing"])
            for _ in range(args.reps):
                for name, client in clients.items():  # alternating, so load on the machine hits both alike
                    # Both run in this process: collect the other variant's garbage outside the timed request.
                    gc.collect()
                    timings[name].append(client.get("/").headers["server-timing"])
            filtered = {
                name: server_ms(
                    c.get("/", params={"selector": "tier=production,accelerator=gpu"}).headers["server-timing"]
                )
                for name, c in clients.items()
            }
            same = [c.get("/").text.split("<tbody>")[1] for c in clients.values()]
            assert same[0] == same[1], "the two reads render different inventories"
        finally:
            for client in clients.values():
                client.__exit__(None, None, None)
            service.close()
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    heads = ("journal read", "sites", "first ms", "median ms", "p95 ms", "median CPU ms", "journal ms", "filtered ms")
    print(" ".join(f"{h:>{w}}" for h, w in zip(heads, (12, 6, 9, 10, 7, 14, 11, 12), strict=True)))
    medians = {}
    for name, raw in timings.items():
        wall = [server_ms(t) for t in raw]
        cpu = statistics.median(server_ms(t, "cpu") for t in raw)
        journal = statistics.median(server_ms(t, "journal") for t in raw)
        medians[name] = statistics.median(wall)
        print(
            f"{name:>12} {len(stacks):>6} {first[name]:>9.0f} {medians[name]:>10.0f} {percentile(wall, 0.95):>7.0f}"
            f" {cpu:>14.0f} {journal:>11.0f} {filtered[name]:>12.0f}"
        )
    print(f"median ratio per-site / one query: {medians['per-site'] / medians['one query']:.1f}x")


if __name__ == "__main__":
    main()
