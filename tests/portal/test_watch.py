"""Site status is gathered off the request path and mapped from what a site's cluster reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgefm.portal.contracts import SiteStatus
from edgefm.portal.watch import PolledStatus, status_of_cluster


def test_polled_status_keeps_the_last_answer_and_marks_a_failing_probe_unreachable() -> None:
    calls: list[str] = []

    def probe(stack: str) -> SiteStatus:
        calls.append(stack)
        if stack == "site-b":
            raise ConnectionRefusedError("127.0.0.1:6443 refused")
        return SiteStatus("healthy", "ok")

    watcher = PolledStatus(lambda: ["site-a", "site-b", "site-c"], probe, interval_s=60)
    assert watcher.statuses() == {}
    watcher.poll_once()
    got = watcher.statuses()
    assert calls == ["site-a", "site-b", "site-c"]
    assert got["site-a"].health == "healthy" and got["site-c"].health == "healthy"
    assert got["site-b"].health == "unreachable" and "refused" in got["site-b"].detail


@dataclass
class Workload:
    kind: str
    name: str
    ready: str
    ok: bool


@dataclass
class Cluster:
    healthy: bool = True
    error: str | None = None
    nodes_ready: int = 3
    nodes: int = 3
    workloads: list[Workload] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)


def test_cluster_status_maps_to_health() -> None:
    ok = Cluster(workloads=[Workload("Deployment", "triton", "2/2", True)])
    assert status_of_cluster(ok).health == "healthy"
    assert "3/3 nodes ready" in status_of_cluster(ok).detail
    degraded = status_of_cluster(Cluster(workloads=[Workload("Deployment", "triton", "1/2", False)], pending=["ft-0"]))
    assert degraded.health == "degraded" and "Deployment/triton 1/2" in degraded.detail and "ft-0" in degraded.detail
    assert status_of_cluster(Cluster(healthy=False)).health == "unreachable"
