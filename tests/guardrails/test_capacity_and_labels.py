from __future__ import annotations

import pytest
from edgefm_guardrails.capacity import check_gpu_capacity, gpu_demands, pod_gpus
from edgefm_guardrails.config import CapacityConfig, LabelsConfig
from edgefm_guardrails.labels import check_labels
from edgefm_guardrails.model import UNKNOWN, NotApplicable, Resource

from tests.guardrails.guardrail_builders import (
    HUB,
    container,
    daemonset,
    deployment,
    facts,
    job,
    resource,
    service,
)

CFG = CapacityConfig()


def triton(replicas: object, gpus: int = 1) -> Resource:
    return deployment(
        "triton", [container("triton", "nvcr.io/nvidia/tritonserver:25.01-py3", gpus=gpus)], replicas=replicas
    )


def finetune(gpus: int = 1) -> Resource:
    return job(
        "finetune-3f2a",
        [container("train", "ghcr.io/edgefm/vit-finetune:0.1.0", gpus=gpus)],
        init=[container("verify")],
    )


def test_workloads_that_fit() -> None:
    # bridge-north: 3 GPUs, Triton 2x1 + fine-tuning 1 = 3.
    assert check_gpu_capacity([facts(), triton(2), finetune()], CFG) == []


def test_workloads_over_capacity_name_each_consumer() -> None:
    t, f = triton(3), finetune(2)
    found = check_gpu_capacity([facts(), t, f], CFG)
    assert len(found) == 1
    assert found[0].message == (
        "site bridge-north: workloads request 5 GPUs (Deployment 'triton' in namespace edgefm 3x1, "
        "Job 'finetune-3f2a' in namespace edgefm 1x2) but the appliance has 3 schedulable GPUs"
    )
    assert found[0].urn == t.urn


def test_time_slicing_capacity_comes_from_the_facts() -> None:
    # bridge-south: 3 L4s time-sliced four ways = 12 schedulable GPUs, as the program publishes them.
    sliced = facts(gpuCapacity=12, physicalGpus=3)
    assert check_gpu_capacity([sliced, triton(12)], CFG) == []
    found = check_gpu_capacity([sliced, triton(13)], CFG)
    assert "the appliance has 12 schedulable GPUs (3 physical, shared)" in found[0].message


def test_daemonsets_count_once_per_node() -> None:
    ds = daemonset("probe", [container("probe", gpus=1)])
    assert gpu_demands([ds], 3)[0][0].total == 3
    assert len(check_gpu_capacity([facts(gpuCapacity=2), ds], CFG)) == 1
    assert check_gpu_capacity([facts(gpuCapacity=2), ds], CapacityConfig(nodes_per_site=2)) == []


def test_job_parallelism_multiplies() -> None:
    j = job("sweep", [container("t", gpus=1)], parallelism=4)
    assert len(check_gpu_capacity([facts(), j], CFG)) == 1


def test_pod_gpu_need_uses_the_larger_of_init_and_app_containers() -> None:
    spec = {
        "initContainers": [container("i", gpus=2)],
        "containers": [container("a", gpus=1), container("b")],
    }
    assert pod_gpus(spec) == 2
    spec = {
        "initContainers": [container("i", gpus=1)],
        "containers": [container("a", gpus=1), container("b", gpus=1)],
    }
    assert pod_gpus(spec) == 2


def test_unknown_replicas_are_not_counted_during_preview() -> None:
    demands, unknown = gpu_demands([triton(UNKNOWN)], 3)
    assert demands == [] and len(unknown) == 1


def test_cpu_only_site_with_a_gpu_workload() -> None:
    found = check_gpu_capacity([facts(gpuCapacity=0, physicalGpus=0), triton(1)], CFG)
    assert "request 1 GPUs" in found[0].message and found[0].message.endswith("has 0 schedulable GPUs")


def test_capacity_is_a_site_check() -> None:
    with pytest.raises(NotApplicable):
        check_gpu_capacity([resource(HUB, "kubernetes:core/v1:Namespace", "ns", {})], CFG)
    with pytest.raises(NotApplicable, match="site-facts"):
        check_gpu_capacity([triton(1)], CFG)


# --- labels -----------------------------------------------------------------------------------------


def test_labelled_objects_pass() -> None:
    assert check_labels(service("triton"), LabelsConfig()) == []
    assert check_labels(service("grafana", stack=HUB), LabelsConfig()) == []


def test_missing_and_wrong_labels() -> None:
    svc = service("triton")
    svc.props["metadata"]["labels"] = {"edgefm.io/site": "bridge-south"}
    found = check_labels(svc, LabelsConfig())
    assert len(found) == 1 and found[0].urn == svc.urn
    message = found[0].message
    assert message.startswith("Service 'triton' in namespace edgefm lacks required labels: ")
    assert "app.kubernetes.io/part-of=edgefm (has None)" in message
    assert "edgefm.io/site=bridge-north (has 'bridge-south', but the stack is site-bridge-north)" in message
    assert "app.kubernetes.io/component (missing)" in message


def test_labels_only_apply_to_kubernetes_objects() -> None:
    assert check_labels(resource(HUB, "aws:s3/bucket:Bucket", "registry", {}), LabelsConfig()) == []
    chart = resource(HUB, "kubernetes:helm.sh/v3:Release", "grafana", {"values": {}})
    assert check_labels(chart, LabelsConfig()) == []
    assert len(check_labels(resource(HUB, "kubernetes:core/v1:Secret", "s", {"metadata": {}}), LabelsConfig())) == 1


def test_additional_labels_are_configurable() -> None:
    svc = service("triton")
    del svc.props["metadata"]["labels"]["app.kubernetes.io/component"]
    assert check_labels(svc, LabelsConfig.from_config({"additionalLabels": []})) == []


def test_requests_without_limits_count_too() -> None:
    c = container("triton", "nvcr.io/nvidia/tritonserver:25.01-py3")
    c["resources"]["requests"]["nvidia.com/gpu"] = "2"
    assert pod_gpus({"containers": [c]}) == 2
    found = check_gpu_capacity([facts(), deployment("triton", [c], replicas=2)], CFG)
    assert "workloads request 4 GPUs" in found[0].message


def chart(values: dict[str, object]) -> Resource:
    import yaml

    props = {
        "metadata": {"name": "llm", "namespace": "kube-system", "labels": {}},
        "spec": {"chart": "vllm", "version": "0.1.0", "valuesContent": yaml.safe_dump(values)},
    }
    return resource("site-bridge-north", "kubernetes:helm.cattle.io/v1:HelmChart", "llm", props)


def test_gpus_a_chart_asks_for_in_its_values() -> None:
    gpu = {"limits": {"nvidia.com/gpu": 1, "cpu": "4"}}
    values = {"replicaCount": 2, "resources": gpu, "router": {"replicas": 1, "resources": {"limits": {"cpu": "1"}}}}
    r = chart(values)
    demands, _ = gpu_demands([r], 3)
    assert [(d.replicas, d.per_pod, d.where) for d in demands] == [(2, 1, "spec.valuesContent resources")]
    found = check_gpu_capacity([facts(), triton(2), r], CFG)
    assert found[0].message == (
        "site bridge-north: workloads request 4 GPUs (Deployment 'triton' in namespace edgefm 2x1, HelmChart 'llm' "
        "in namespace kube-system spec.valuesContent resources 2x1) but the appliance has 3 schedulable GPUs"
    )
    assert check_gpu_capacity([facts(), triton(1), chart({**values, "replicaCount": 1})], CFG) == []


def test_nested_chart_components_use_their_own_replicas() -> None:
    values = {
        "replicaCount": 5,
        "worker": {"replicas": 3, "resources": {"requests": {"nvidia.com/mig-1g.10gb": "1"}}},
        "server": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
    }
    demands, _ = gpu_demands([chart(values)], 3)
    assert sorted((d.where.split()[-1], d.replicas, d.per_pod) for d in demands) == [
        ("server.resources", 5, 1),
        ("worker.resources", 3, 1),
    ]


def test_a_gpu_operator_sharing_config_is_not_a_demand() -> None:
    # The time-slicing config names nvidia.com/gpu but requests nothing.
    values = {"devicePlugin": {"config": {"default": "any"}}, "sharing": {"resources": [{"name": "nvidia.com/gpu"}]}}
    assert gpu_demands([chart(values)], 3) == ([], [])
