"""The sample fleet applied for real to the fleet lab (a Kubernetes API per stack, kwok for the kubelet), on the
real engine through the Automation API: what `make demo` does. Render mode keeps its own tests (test_fleet). The
applied fleet (`env`, `applied`) is the session's, shared with test_lab_fleetops."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import pytest
import yaml

from edgefm.model.stacks import is_access_stack
from edgefm.ops.lab.kubeapi import KubeApi, KubeApiError
from edgefm.ops.rollout import site_labels
from tests.engine.labfleet import Applied, Env

pytestmark = pytest.mark.engine

GPU_SITE = "site-bridge-north"
# Secret keys in the sites' and the hub's Secrets (the others hold public values: endpoints, key ids, CA certs).
SECRET_KEYS = {
    "rootPassword",
    "config.env",
    "secretAccessKey",
    "password",
    "tls.key",
    "admin-password",
    "auth",
    "secretKey",
    "users",
}
REQUIRED_LABELS = ("app.kubernetes.io/part-of", "app.kubernetes.io/managed-by", "edgefm.io/site")
TRITON_BUMP = ("nvcr.io/nvidia/tritonserver:25.01-py3", "nvcr.io/nvidia/tritonserver:25.02-py3")


class Discovery:
    """kind -> (path prefix, plural, namespaced) per apiVersion, from the cluster's own discovery."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.cache: dict[str, dict[str, tuple[str, bool]]] = {}

    def path(self, api_version: str, kind: str, namespace: str | None, name: str) -> str:
        prefix = "api/v1" if api_version == "v1" else f"apis/{api_version}"
        if api_version not in self.cache:
            resources = self.api.get(prefix)["resources"]
            self.cache[api_version] = {
                r["kind"]: (r["name"], r["namespaced"]) for r in resources if "/" not in r["name"]
            }
        plural, namespaced = self.cache[api_version][kind]
        where = f"namespaces/{namespace}/" if namespaced else ""
        return f"{prefix}/{where}{plural}/{name}"


def _state(env: Env, stack: str) -> list[dict[str, Any]]:
    deployment = env.fleet.stack(stack).export_stack().deployment
    assert deployment is not None
    resources: list[dict[str, Any]] = deployment["resources"]
    return resources


def _k8s_objects(resources: list[dict[str, Any]]) -> list[tuple[str, str, str | None, str]]:
    """(apiVersion, kind, namespace, name) of every Kubernetes object in a stack's state."""
    out = []
    for r in resources:
        if not r.get("custom") or not r["type"].startswith("kubernetes:"):
            continue
        if r["type"].endswith("Patch"):
            continue  # a patch sets fields on an object edgefm does not own (a GPU node's MIG layout label)
        outputs = r.get("outputs") or {}
        meta = outputs.get("metadata") or {}
        out.append((outputs["apiVersion"], outputs["kind"], meta.get("namespace"), meta["name"]))
    return out


def _live(env: Env, stack: str) -> dict[tuple[str, str | None, str], dict[str, Any]]:
    """Every object the stack's state holds, read back from its cluster (kind, namespace, name) -> object."""
    api = env.api(stack)
    disco = Discovery(api)
    try:
        return {
            (kind, ns, name): api.get(disco.path(version, kind, ns, name))
            for version, kind, ns, name in _k8s_objects(_state(env, stack))
        }
    finally:
        api.close()


def _clusters(stacks: Iterable[str]) -> list[str]:
    """The stacks with a lab cluster of their own: the hub's access shards put their objects on the hub's."""
    return [s for s in stacks if not is_access_stack(s)]


def test_every_sample_stack_is_applied_and_a_second_preview_changes_nothing(env: Env, applied: Applied) -> None:
    assert not applied.failed, applied.failed
    assert next(iter(applied.runs)) == "hub" and len(applied.runs) == len(env.fleet.stacks()) >= 5
    for name, run in applied.runs.items():
        assert run.changes.get("create", 0) > 0, (name, run.changes)
        assert run.unschedulable == [], (name, run.unschedulable)
    for name in applied.runs:
        again = env.fleet.preview(name)
        assert set(again.changes) == {"same"}, (name, again.changes)


def test_every_object_is_live_with_the_required_labels(env: Env, applied: Applied) -> None:
    for stack in _clusters(applied.runs):
        live = _live(env, stack)
        kinds = {kind for kind, _ns, _name in live}
        assert {"Namespace", "Secret", "ConfigMap"} <= kinds, (stack, kinds)
        for (kind, ns, name), obj in live.items():
            labels = obj["metadata"].get("labels") or {}
            missing = [k for k in REQUIRED_LABELS if k not in labels]
            assert not missing, f"{stack}: {kind} {ns}/{name} lacks {missing}"
            assert labels["app.kubernetes.io/part-of"] == "edgefm"
    # The custom resources went in after their (vendor) CRDs: HelmCharts on k3s sites, OLM and ODF on OpenShift.
    site_kinds = {kind for stack in env.sites() for kind, _ns, _name in _live(env, stack)}
    assert {"HelmChart", "Certificate", "ClusterIssuer"} <= site_kinds
    if "site-harbor-ocp" in applied.runs:
        assert {"Subscription", "OperatorGroup", "ClusterPolicy", "ObjectBucketClaim"} <= site_kinds
        # The MIG layout reached every GPU node as its label (the ClusterPolicy's default stays all-disabled).
        api = env.api("site-harbor-ocp")
        try:
            layouts = {
                n["metadata"]["name"]: (n["metadata"].get("labels") or {}).get("nvidia.com/mig.config")
                for n in api.items("api/v1/nodes")
            }
        finally:
            api.close()
        assert layouts == {"ocp-a": "all-1g.10gb", "ocp-b": "all-1g.10gb", "ocp-c": "all-1g.10gb"}, layouts


def test_triton_is_available_on_gpu_nodes(env: Env, applied: Applied) -> None:
    api = env.api(GPU_SITE)
    try:
        gpu_nodes = {
            n["metadata"]["name"]
            for n in api.items("api/v1/nodes")
            if int(n["status"]["allocatable"].get("nvidia.com/gpu", "0")) > 0
        }
        triton = [
            d
            for d in api.items("apis/apps/v1/deployments")
            if any(c["name"] == "triton" for c in d["spec"]["template"]["spec"]["containers"])
        ]
        assert len(triton) == 1
        spec, status = triton[0]["spec"], triton[0]["status"]
        assert status.get("availableReplicas") == spec["replicas"] >= 1
        labels = ",".join(f"{k}={v}" for k, v in spec["selector"]["matchLabels"].items())
        pods = api.items(f"api/v1/namespaces/{triton[0]['metadata']['namespace']}/pods", {"labelSelector": labels})
        assert len(pods) == spec["replicas"]
        assert {p["spec"]["nodeName"] for p in pods} <= gpu_nodes
        # Two replicas of one GPU each on one-GPU nodes: the scheduler spread them over distinct nodes.
        assert len({p["spec"]["nodeName"] for p in pods}) == len(pods)
    finally:
        api.close()


def test_lab_status_reads_what_runs_from_each_cluster(env: Env, applied: Applied) -> None:
    statuses = {s.stack: s for s in env.lab.status()}
    assert set(statuses) == set(_clusters(env.fleet.stacks()))
    for stack, s in statuses.items():
        if stack not in applied.runs:
            continue
        assert s.healthy, (stack, s)
        assert all(w.ok for w in s.workloads), (stack, [w for w in s.workloads if not w.ok])
        assert all(gpu for _node, gpu in s.gpu_pods.values()), (stack, s.gpu_pods)
    assert statuses[GPU_SITE].gpu_pods and any(w.kind == "Job" for w in statuses[GPU_SITE].workloads)


def test_a_profile_version_bump_changes_exactly_the_matching_sites(env: Env, applied: Applied) -> None:
    placement = env.project / "policies" / "placement.yaml"
    original = placement.read_text()
    doc = yaml.safe_load(original)
    production = next(p for p in doc["profiles"] if p["name"] == "production")
    production["set"].setdefault("serving", {})["image"] = TRITON_BUMP[1]
    placement.write_text(yaml.safe_dump(doc, sort_keys=False))
    labels = site_labels(env.project, env.sites())
    matching = {s for s, lab in labels.items() if lab.get("tier") == "production"}
    assert matching and matching != set(env.sites())
    try:
        images_before = {s: _triton_images(env, s) for s in env.sites()}
        for stack in env.sites():
            preview = env.fleet.preview(stack)
            changed = set(preview.changes) - {"same"}
            assert bool(changed) == (stack in matching), (stack, preview.changes)
            if stack in matching:
                assert preview.changes.get("update") == 1, preview.changes
                env.fleet.up(stack)
        for stack in env.sites():
            expected = TRITON_BUMP[1] if stack in matching else images_before[stack]
            assert _triton_images(env, stack) == expected, stack
    finally:
        placement.write_text(original)
        for stack in matching:
            env.fleet.up(stack)


def _triton_images(env: Env, stack: str) -> str:
    api = env.api(stack)
    try:
        return ",".join(
            sorted(
                c["image"]
                for d in api.items("apis/apps/v1/deployments")
                for c in d["spec"]["template"]["spec"]["containers"]
                if c["name"] == "triton"
            )
        )
    finally:
        api.close()


def test_a_workload_no_node_can_hold_stays_pending_and_the_run_says_so(env: Env, applied: Applied) -> None:
    """Three one-GPU nodes: a fine-tuning run asking for two GPUs fits the site's total (so the capacity
    guardrail lets it through) but no node, so the scheduler leaves it Pending, and the update reports it."""
    placement = env.project / "policies" / "placement.yaml"
    stack_path = env.project / "stacks" / f"Pulumi.{GPU_SITE}.yaml"
    originals = {placement: placement.read_text(), stack_path: stack_path.read_text()}
    doc = yaml.safe_load(originals[placement])
    finetune = next(p for p in doc["profiles"] if p["name"] == "finetune")
    finetune["set"]["fineTuning"]["gpus"] = 2
    placement.write_text(yaml.safe_dump(doc, sort_keys=False))
    stack_doc = yaml.safe_load(originals[stack_path])
    stack_doc["config"]["edgefm:site"]["overrides"] = {"serving.replicas": 1}
    stack_path.write_text(yaml.safe_dump(stack_doc, sort_keys=False))
    try:
        run = env.fleet.up(GPU_SITE)
        assert len(run.unschedulable) == 1, run.unschedulable
        assert "Insufficient nvidia.com/gpu" in run.unschedulable[0]
        status = next(s for s in env.lab.status() if s.stack == GPU_SITE)
        assert any(pod.startswith(run.unschedulable[0].split(":")[0]) for pod in status.pending)
    finally:
        for path, text in originals.items():
            path.write_text(text)
        env.fleet.up(GPU_SITE)


def test_no_plaintext_secret_in_state(env: Env, applied: Applied) -> None:
    """Every secret value the clusters' Secrets hold (passwords, secret keys, private keys) is absent from every
    backend file in plaintext and in base64."""
    values: set[bytes] = set()
    for stack in _clusters(applied.runs):
        api = env.api(stack)
        try:
            for secret in api.items("api/v1/secrets"):
                if secret.get("type") == "kubernetes.io/service-account-token":
                    continue
                for key, encoded in (secret.get("data") or {}).items():
                    if key in SECRET_KEYS:
                        values.add(base64.b64decode(encoded))
        finally:
            api.close()
    assert len(values) >= 5
    leaks = []
    for path in env.backend.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaks += [f"{path.name}: {v[:8]!r}…" for v in values if v in data or base64.b64encode(v) in data]
    assert not leaks, leaks


def test_destroy_leaves_the_datasets_bucket(env: Env, applied: Applied) -> None:
    before = _live(env, GPU_SITE)
    env.fleet.destroy(GPU_SITE)
    api = env.api(GPU_SITE)
    disco = Discovery(api)
    try:
        left, gone = [], []
        for kind, ns, name in before:
            version = before[(kind, ns, name)]["apiVersion"]
            try:
                api.get(disco.path(version, kind, ns, name))
                left.append((kind, name))
            except KubeApiError:
                gone.append((kind, name))
    finally:
        api.close()
    datasets = [o for o in before.values() if (o["metadata"].get("labels") or {}).get("edgefm.io/bucket") == "datasets"]
    assert len(datasets) == 1
    assert (datasets[0]["kind"], datasets[0]["metadata"]["name"]) in left
    # Serving is gone from the cluster; the bucket and what it lives in stay.
    assert any(kind == "Deployment" for kind, _name in gone)
    assert ("Namespace", "edgefm") in gone
