"""The health gate: workload verdicts over Kubernetes API objects, and PromQL against a real Prometheus fed
through remote-write (built from its Go module, on 127.0.0.1)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edgefm.ops.health import gate, judge_workloads, promql_holds
from edgefm.ops.strategy import HealthGate

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def deployment(
    want: int, available: int, updated: int | None = None, generation: int = 2, seen: int = 2
) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"namespace": "edgefm", "name": "triton", "generation": generation},
        "spec": {"replicas": want},
        "status": {
            "availableReplicas": available,
            "updatedReplicas": available if updated is None else updated,
            "observedGeneration": seen,
        },
    }


def pod(phase: str, age: float) -> dict[str, Any]:
    created = (NOW - timedelta(seconds=age)).isoformat().replace("+00:00", "Z")
    return {
        "kind": "Pod",
        "metadata": {"namespace": "edgefm", "name": "p", "creationTimestamp": created},
        "status": {"phase": phase},
    }


def test_healthy_workloads() -> None:
    objects = [
        deployment(2, 2),
        {
            "kind": "DaemonSet",
            "metadata": {"namespace": "gpu", "name": "dcgm"},
            "status": {"desiredNumberScheduled": 3, "numberReady": 3, "updatedNumberScheduled": 3},
        },
        {
            "kind": "Job",
            "metadata": {"namespace": "edgefm", "name": "finetune"},
            "status": {"conditions": [{"type": "Complete", "status": "True"}]},
        },
        pod("Pending", 30),
        pod("Running", 10_000),
    ]
    assert judge_workloads(objects, 300, NOW).healthy


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        (deployment(2, 1), "Deployment edgefm/triton: 1/2 replicas available"),
        (deployment(2, 2, updated=1), "1/2 replicas updated"),
        (deployment(2, 2, generation=3, seen=2), "has not seen the newest spec"),
        (
            {
                "kind": "DaemonSet",
                "metadata": {"namespace": "gpu", "name": "dcgm"},
                "status": {"desiredNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3},
            },
            "2/3 ready",
        ),
        (
            {
                "kind": "Job",
                "metadata": {"namespace": "edgefm", "name": "finetune"},
                "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]},
            },
            "failed (BackoffLimitExceeded)",
        ),
        (pod("Pending", 301), "Pending for 301 s (deadline 300 s)"),
    ],
)
def test_each_unhealthy_kind_is_named(obj: dict[str, Any], problem: str) -> None:
    verdict = judge_workloads([obj], 300, NOW)
    assert not verdict.healthy and any(problem in p for p in verdict.problems), verdict.problems


class Flaky:
    """A workload source that is unhealthy `bad` times, then healthy."""

    def __init__(self, bad: int) -> None:
        self.bad = bad

    def managed_objects(self) -> list[dict[str, Any]]:
        self.bad -= 1
        return [deployment(1, 0 if self.bad >= 0 else 1)]


def test_gate_polls_until_healthy_or_the_deadline() -> None:
    now = [0.0]
    health = HealthGate(interval=5)
    ok = gate("s", health, Flaky(2), deadline=100, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert ok.healthy and now[0] == 10
    now[0] = 0.0
    bad = gate(
        "s", health, Flaky(100), deadline=30, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s)
    )
    assert not bad.healthy and "Deployment edgefm/triton: 0/1 replicas available" in bad.problems and now[0] == 30


@pytest.fixture
def metrics() -> Iterator[tuple[int, dict[str, str]]]:
    """A site's metrics endpoint on 127.0.0.1: the exposition text the test sets."""
    body = {"text": "edgefm_inference_ready 1\n"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body["text"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], body
    server.shutdown()
    server.server_close()


def test_promql_gate_against_prometheus_fed_by_remote_write(
    metrics: tuple[int, dict[str, str]], tmp_path: Path
) -> None:
    from tools.prometheus.server import hub_and_agent

    port, body = metrics
    query = 'min_over_time(edgefm_inference_ready{site="{site}"}[5s]) == 1'
    health = HealthGate(workloads=False, promql=query, prometheus_url="http://unused", interval=0.5)
    with hub_and_agent(tmp_path, port, site="bridge-north") as hub:
        live = health.model_copy(update={"prometheus_url": hub.url})
        import time

        verdict = gate("bridge-north", live, None, deadline=time.time() + 60)
        assert verdict.healthy, verdict.problems
        # Another site's series does not satisfy this one's query.
        assert not promql_holds(hub.url, query.replace("{site}", "bridge-south"))[0]
        body["text"] = "edgefm_inference_ready 0\n"
        time.sleep(8)  # the 5 s window has only zeros once the agent's scrapes reached the hub
        ok, message = promql_holds(hub.url, query.replace("{site}", "bridge-north"))
        assert not ok and "0 series" in message
        bad = gate("bridge-north", live.model_copy(update={"interval": 1.0}), None, deadline=time.time() + 3)
        assert not bad.healthy and "PromQL" in bad.problems[0]
        assert not promql_holds(hub.url, "this is not promql")[0]
