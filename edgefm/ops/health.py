"""The health gate after a site's update: its own cluster, through the Kubernetes API, and optionally a PromQL
condition on the hub's telemetry.

The cluster check lists what edgefm manages (label `app.kubernetes.io/part-of=edgefm`, every namespace):
Deployments must be available with every replica updated, DaemonSets ready on every scheduled node, Jobs not
failed, and no pod Pending longer than the gate's `pendingDeadline`. The verdict functions work on the API's
JSON objects, so they are the same whether the objects come from a cluster or from a test's fixtures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import requests

from edgefm.ops.strategy import HealthGate

MANAGED = "app.kubernetes.io/part-of=edgefm"
PROMQL_TIMEOUT = 10.0


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    problems: list[str]


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')} {meta.get('namespace', '')}/{meta.get('name', '?')}"


def deployment_problems(obj: Mapping[str, Any]) -> list[str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = spec.get("replicas", 1)
    meta = obj.get("metadata") or {}
    if (status.get("observedGeneration") or 0) < (meta.get("generation") or 0):
        return [f"{_name(obj)}: the controller has not seen the newest spec yet"]
    problems = []
    if (status.get("updatedReplicas") or 0) < want:
        problems.append(f"{_name(obj)}: {status.get('updatedReplicas') or 0}/{want} replicas updated")
    if (status.get("availableReplicas") or 0) < want:
        problems.append(f"{_name(obj)}: {status.get('availableReplicas') or 0}/{want} replicas available")
    return problems


def daemonset_problems(obj: Mapping[str, Any]) -> list[str]:
    status = obj.get("status") or {}
    want = status.get("desiredNumberScheduled") or 0
    ready, updated = status.get("numberReady") or 0, status.get("updatedNumberScheduled") or 0
    if ready < want or updated < want:
        return [f"{_name(obj)}: {ready}/{want} ready, {updated}/{want} updated"]
    return []


def job_problems(obj: Mapping[str, Any]) -> list[str]:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return [f"{_name(obj)}: failed ({condition.get('reason') or 'no reason given'})"]
    return []


def pod_problems(obj: Mapping[str, Any], pending_deadline: float, now: datetime) -> list[str]:
    status = obj.get("status") or {}
    if status.get("phase") != "Pending":
        return []
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return []
    since = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    waited = (now - since).total_seconds()
    if waited > pending_deadline:
        return [f"{_name(obj)}: Pending for {waited:.0f} s (deadline {pending_deadline:.0f} s)"]
    return []


def judge_workloads(objects: Iterable[Mapping[str, Any]], pending_deadline: float, now: datetime) -> Verdict:
    problems: list[str] = []
    for obj in objects:
        kind = obj.get("kind")
        if kind == "Deployment":
            problems += deployment_problems(obj)
        elif kind == "DaemonSet":
            problems += daemonset_problems(obj)
        elif kind == "Job":
            problems += job_problems(obj)
        elif kind == "Pod":
            problems += pod_problems(obj, pending_deadline, now)
    return Verdict(not problems, problems)


class WorkloadSource(Protocol):
    def managed_objects(self) -> list[dict[str, Any]]: ...


class ClusterWorkloads:
    """A site's cluster through the Kubernetes API (kubeconfig text, e.g. the site stack's `kubeconfig`)."""

    def __init__(self, kubeconfig: str) -> None:
        import yaml
        from kubernetes import client, config

        api = config.new_client_from_config_dict(yaml.safe_load(kubeconfig))
        self._api = api
        self._apps, self._batch, self._core = client.AppsV1Api(api), client.BatchV1Api(api), client.CoreV1Api(api)

    def managed_objects(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for kind, lister in (
            ("Deployment", self._apps.list_deployment_for_all_namespaces),
            ("DaemonSet", self._apps.list_daemon_set_for_all_namespaces),
            ("Job", self._batch.list_job_for_all_namespaces),
            ("Pod", self._core.list_pod_for_all_namespaces),
        ):
            for item in lister(label_selector=MANAGED, _request_timeout=30).items:
                obj = self._api.sanitize_for_serialization(item)
                obj["kind"] = kind
                out.append(obj)
        return out


def promql_holds(url: str, query: str, timeout: float = PROMQL_TIMEOUT) -> tuple[bool, str]:
    """Runs an instant query; it holds when the result is a non-empty vector or matrix, or a non-zero scalar."""
    response = requests.get(f"{url.rstrip('/')}/api/v1/query", params={"query": query}, timeout=timeout)
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        return False, f"PromQL {query!r}: {body.get('errorType', response.status_code)}: {body.get('error', '')}"
    data = body["data"]
    if data["resultType"] in ("vector", "matrix"):
        return (bool(data["result"]), f"PromQL {query!r}: {len(data['result'])} series")
    value = float(data["result"][1])
    return value != 0, f"PromQL {query!r} = {value}"


def gate(
    site: str,
    health: HealthGate,
    workloads: WorkloadSource | None,
    deadline: float,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Polls the gate until it holds or `deadline` (clock seconds) passes; the last problems are returned."""
    while True:
        problems: list[str] = []
        if health.workloads and workloads is not None:
            try:
                problems += judge_workloads(
                    workloads.managed_objects(), health.pending_deadline, datetime.now(UTC)
                ).problems
            except Exception as exc:  # an unreachable API is a failed check, polled again until the deadline
                problems.append(f"cluster API: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        if health.promql and health.prometheus_url:
            try:
                ok, message = promql_holds(health.prometheus_url, health.promql.replace("{site}", site))
                if not ok:
                    problems.append(message)
            except (requests.RequestException, ValueError, KeyError) as exc:
                problems.append(f"PromQL: {type(exc).__name__}: {exc}")
        if not problems:
            return Verdict(True, [])
        if clock() + health.interval > deadline:
            return Verdict(False, problems)
        sleep(health.interval)
