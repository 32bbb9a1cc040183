"""The lab's processes for real (no engine): a hub and one GPU site started, checked through their APIs, started
again without change, and stopped by pid. Needs `make lab-tools` (built here when missing)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from edgefm.ops.lab.kubeapi import KubeApi
from edgefm.ops.lab.runtime import PROCESS_ORDER, Lab
from tests.harness import ROOT
from tools.gobuild import BuildError

SITE = "site-bridge-north"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    from tools.lab.build import Progress, build, cache_dir, load_pins

    try:
        build(load_pins(), cache_dir(), Progress())
    except BuildError as exc:
        pytest.fail(f"make lab-tools failed at step {exc.step}: {exc.message}\n{exc.tail}", pytrace=False)
    root = tmp_path_factory.mktemp("lab-runtime")
    shutil.copytree(ROOT / "policies", root / "policies")
    (root / "stacks").mkdir()
    for stack in ("hub", "hub-access-000", "hub-access-001", SITE):  # a hub with sites has its access shards
        shutil.copy2(ROOT / "stacks" / f"Pulumi.{stack}.yaml", root / "stacks")
    lab = Lab(root, root / "lab")
    lab.up()
    yield lab
    lab.down(purge=True)


def _api(lab: Lab, stack: str) -> KubeApi:
    return KubeApi(lab.cluster(stack).credentials(lab.dir))


def test_every_cluster_is_healthy_with_its_sites_nodes(lab: Lab) -> None:
    statuses = {s.stack: s for s in lab.status()}
    assert set(statuses) == {"hub", SITE}
    assert all(s.healthy and s.nodes_ready == s.nodes == 3 for s in statuses.values()), statuses
    api = _api(lab, SITE)
    try:
        nodes = {n["metadata"]["name"]: n for n in api.items("api/v1/nodes")}
        assert sorted(nodes) == ["n1", "n2", "n3"]
        n1 = nodes["n1"]
        assert n1["status"]["allocatable"]["nvidia.com/gpu"] == "1"
        assert n1["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-L40S"
        assert {"type": "InternalIP", "address": "10.20.0.11"} in n1["status"]["addresses"]
        crds = {c["spec"]["names"]["kind"] for c in api.items("apis/apiextensions.k8s.io/v1/customresourcedefinitions")}
        assert {
            "HelmChart",
            "Certificate",
            "ClusterIssuer",
            "ObjectBucketClaim",
            "Subscription",
            "OperatorGroup",
        } <= crds
        assert "ClusterPolicy" in crds
    finally:
        api.close()


def test_only_loopback_tls_with_the_lab_ca_and_rbac(lab: Lab) -> None:
    state = lab.cluster(SITE)
    for pid in (p.pid for p in state.procs.values()):
        assert Path(f"/proc/{pid}").exists()
    # Without a client certificate the API refuses (anonymous auth is off); the CA is the lab's own.
    resp = requests.get(f"{state.server}/api/v1/nodes", verify=str(lab.dir / "ca.crt"), timeout=5)
    assert resp.status_code == 401
    # The scheduler's identity is limited by RBAC: it may not read Secrets.
    api = KubeApi(state.credentials(lab.dir, "kube-scheduler"))
    try:
        denied = api.session.get(f"{api.server}/api/v1/secrets", timeout=5)
        assert denied.status_code == 403
    finally:
        api.close()
    listening = Path("/proc/net/tcp").read_text().splitlines()[1:]
    ports = {state.ports["apiserver"], state.ports["etcd"]}
    local = [line.split()[1] for line in listening if line.split()[3] == "0A"]  # LISTEN
    for port in ports:
        hexport = f"{port:04X}"
        assert [a for a in local if a.endswith(f":{hexport}")] == [f"0100007F:{hexport}"]


def _deployment(name: str, gpus: int) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "registry.example/never-pulled:1"}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }


def test_gpu_pods_land_on_gpu_nodes_and_an_oversized_one_stays_pending(lab: Lab) -> None:
    api = _api(lab, SITE)
    try:
        url = f"{api.server}/apis/apps/v1/namespaces/default/deployments"
        for name, gpus in (("fits", 1), ("too-big", 2)):
            assert api.session.post(url, json=_deployment(name, gpus), timeout=10).status_code == 201
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            fits = next(s for s in lab.status() if s.stack == SITE)
            if any(w.name == "fits" and w.ok for w in fits.workloads):
                break
            time.sleep(0.5)
        assert any(w.name == "fits" and w.ok for w in fits.workloads), fits.workloads
        placed = {pod: node for pod, (node, gpu) in fits.gpu_pods.items() if gpu}
        assert any(p.startswith("default/fits-") for p in placed)
        pending = lab.unschedulable(SITE)
        assert len(pending) == 1 and pending[0].startswith("default/too-big-"), pending
        assert "Insufficient nvidia.com/gpu" in pending[0]
    finally:
        api.close()


def test_up_again_leaves_running_clusters_alone(lab: Lab) -> None:
    before = {s: {n: p.pid for n, p in lab.cluster(s).procs.items()} for s in ("hub", SITE)}
    lab.up()
    after = {s: {n: p.pid for n, p in lab.cluster(s).procs.items()} for s in ("hub", SITE)}
    assert before == after


def test_down_stops_every_process_by_pid_and_up_restarts_with_the_data(lab: Lab) -> None:
    pids = [p.pid for s in ("hub", SITE) for p in lab.cluster(s).procs.values()]
    server = lab.cluster(SITE).server
    stopped = lab.down()
    assert stopped == {"hub": list(reversed(PROCESS_ORDER)), SITE: list(reversed(PROCESS_ORDER))}
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert lab.down() == {"hub": [], SITE: []}
    lab.up()
    # Same address (kubeconfigs stay valid) and the objects are still there.
    assert lab.cluster(SITE).server == server
    api = _api(lab, SITE)
    try:
        names = {d["metadata"]["name"] for d in api.items("apis/apps/v1/namespaces/default/deployments")}
        assert {"fits", "too-big"} <= names
    finally:
        api.close()
