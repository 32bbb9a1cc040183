"""Site status off the request path: a thread asks each site's cluster in turn, pages read the last answers.

Asking thousands of clusters cannot happen while a page renders; `PolledStatus` keeps the last answer per
stack (with when it was taken) and the inventory shows it. The probe for the fleet lab reads each site's own
Kubernetes API through `edgefm.ops.lab` (workloads available, pods pending). Drift is not a probe's: the pages
read it from the journal's drift checks, for the whole fleet at once.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgefm.portal.contracts import SiteStatus

Probe = Callable[[str], SiteStatus]
_EPOCH = datetime.min.replace(tzinfo=UTC)


class PolledStatus:
    """Calls `probe(stack)` for every stack of `stacks()` every `interval_s` seconds on one daemon thread."""

    def __init__(self, stacks: Callable[[], list[str]], probe: Probe, interval_s: float = 15.0) -> None:
        self._stacks, self._probe, self.interval_s = stacks, probe, interval_s
        self._lock = threading.Lock()
        self._values: dict[str, SiteStatus] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def statuses(self) -> Mapping[str, SiteStatus]:
        with self._lock:
            return dict(self._values)

    def poll_once(self) -> None:
        for stack in self._stacks():
            if self._stop.is_set():
                return
            try:
                status = self._probe(stack)
            except Exception as exc:  # one unreachable site must not stop the others being watched
                status = SiteStatus("unreachable", f"{type(exc).__name__}: {exc}"[:300], (), None, datetime.now(UTC))
            with self._lock:
                self._values[stack] = status

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval_s)

    def start(self) -> PolledStatus:
        self._thread = threading.Thread(target=self._loop, name="portal-site-status", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5)


def status_of_cluster(cluster: Any) -> SiteStatus:
    """The lab's ClusterStatus (processes, nodes, workloads, pending pods) → the portal's SiteStatus."""
    now = datetime.now(UTC)
    if cluster.error or not cluster.healthy:
        return SiteStatus("unreachable", str(cluster.error or "control plane not running"), (), None, now)
    bad = [f"{w.kind}/{w.name} {w.ready}" for w in cluster.workloads if not w.ok]
    pending = [f"pod {p} pending" for p in cluster.pending]
    ready = f"{cluster.nodes_ready}/{cluster.nodes} nodes ready, {len(cluster.workloads)} workloads"
    if bad or pending:
        return SiteStatus("degraded", "; ".join([*bad, *pending])[:500], (), None, now)
    return SiteStatus("healthy", ready, (), None, now)


def lab_probe(repo: Path) -> Probe:
    """Each site's health read from its fleet-lab cluster (needs `edgefm lab up`)."""
    runtime = importlib.import_module("edgefm.ops.lab.runtime")
    lab = runtime.Lab(repo)

    def probe(stack: str) -> SiteStatus:
        return status_of_cluster(lab.cluster_status(stack))

    return probe
