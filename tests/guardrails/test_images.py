from __future__ import annotations

import pytest
from edgefm_guardrails.config import ImagesConfig
from edgefm_guardrails.images import check_images, helm_value_images, image_problems, parse_image

from tests.guardrails.guardrail_builders import container, deployment, helm_chart, job

DEFAULT = ImagesConfig()

# Every image edgefm's placement defaults and components name today (policies/placement.yaml on main).
PROGRAM_IMAGES = [
    "quay.io/minio/minio:RELEASE.2024-12-18T13-15-44Z",
    "quay.io/minio/mc:RELEASE.2024-11-21T17-21-54Z",
    "docker.io/rancher/helm-controller:v0.16.5",
    "ghcr.io/edgefm/edgefm-tools:0.1.0",
    "ghcr.io/edgefm/vit-finetune:0.1.0",
    "nvcr.io/nvidia/tritonserver:25.01-py3",
    "quay.io/prometheus/prometheus:v3.2.1",
    "nvcr.io/nvidia/gpu-operator:v25.3.0",
    "registry.k8s.io/nfd/node-feature-discovery:v0.17.2",
]


@pytest.mark.parametrize("image", PROGRAM_IMAGES)
def test_the_programs_images_pass_the_default_list(image: str) -> None:
    assert image_problems(image, DEFAULT) == []


@pytest.mark.parametrize(
    ("ref", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io/library/nginx", None, None),
        ("rancher/k3s:v1.31.6-k3s1", "docker.io/rancher/k3s", "v1.31.6-k3s1", None),
        ("localhost:5000/x/y:1", "localhost:5000/x/y", "1", None),
        ("index.docker.io/minio/minio:1", "docker.io/minio/minio", "1", None),
        (
            "nvcr.io/nvidia/tritonserver@sha256:" + "a" * 64,
            "nvcr.io/nvidia/tritonserver",
            None,
            "sha256:" + "a" * 64,
        ),
    ],
)
def test_parse_image_normalises_docker_hub(ref: str, repository: str, tag: str | None, digest: str | None) -> None:
    image = parse_image(ref)
    assert image is not None
    assert (image.repository, image.tag, image.digest) == (repository, tag, digest)


def test_short_docker_hub_names_match_their_organisation() -> None:
    assert image_problems("rancher/helm-controller:v0.16.5", DEFAULT) == []
    assert image_problems("minio/mc:RELEASE.2024-11-21T17-21-54Z", DEFAULT) == []
    # docker.io/rancher must not let docker.io/rancherx or library images through.
    assert any("not an allowed registry" in p for p in image_problems("docker.io/rancherx/evil:1", DEFAULT))
    assert any("not an allowed registry" in p for p in image_problems("ubuntu:24.04", DEFAULT))


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("ghcr.io/edgefm/edgefm-tools:latest", "floating tag 'latest'"),
        ("ghcr.io/edgefm/edgefm-tools:LATEST", "floating tag 'LATEST'"),
        ("ghcr.io/edgefm/edgefm-tools:stable", "floating tag 'stable'"),
        ("ghcr.io/edgefm/edgefm-tools", "no tag or digest"),
        ("ghcr.io/edgefm/edgefm-tools@sha256:abc", "malformed digest"),
        ("docker.io/library/busybox:1.36", "not an allowed registry"),
        ("ghcr.io/someone-else/tools:1.0", "not an allowed registry"),
        ("not an image", "not a valid image reference"),
    ],
)
def test_unpinned_or_foreign_images_are_refused(ref: str, fragment: str) -> None:
    problems = image_problems(ref, DEFAULT)
    assert any(fragment in p for p in problems), problems


def test_digest_pins_even_with_a_floating_tag() -> None:
    assert image_problems("nvcr.io/nvidia/tritonserver:latest@sha256:" + "0" * 64, DEFAULT) == []


def test_workload_violation_names_resource_and_container() -> None:
    ok = deployment("triton", [container("triton", "nvcr.io/nvidia/tritonserver:25.01-py3")])
    assert check_images(ok, DEFAULT) == []
    bad = job(
        "finetune",
        [container("train", "ghcr.io/edgefm/vit-finetune:latest")],
        init=[container("verify", "docker.io/library/python:3.12")],
    )
    found = check_images(bad, DEFAULT)
    messages = [v.message for v in found]
    assert len(found) == 2
    assert all(v.urn == bad.urn for v in found)
    assert any("Job 'finetune'" in m and "container 'train'" in m and "latest" in m for m in messages)
    assert any("init container 'verify'" in m and "not an allowed registry" in m for m in messages)


def test_unknown_image_is_left_for_update_time() -> None:
    from edgefm_guardrails.model import UNKNOWN

    c = container("app")
    c["image"] = UNKNOWN
    assert check_images(deployment("x", [c]), DEFAULT) == []


def test_config_replaces_the_allowed_list() -> None:
    cfg = ImagesConfig.from_config({"allowedRegistries": ["registry.site.local/mirror"]})
    assert image_problems("registry.site.local/mirror/nvidia/tritonserver:25.01-py3", cfg) == []
    assert any("not an allowed registry" in p for p in image_problems("nvcr.io/nvidia/tritonserver:25.01-py3", cfg))


def test_config_rejects_wrong_types() -> None:
    with pytest.raises(ValueError, match="allowedRegistries"):
        ImagesConfig.from_config({"allowedRegistries": "nvcr.io"})


MINIO_VALUES = """
image: {repository: quay.io/minio/minio, tag: RELEASE.2024-12-18T13-15-44Z}
mcImage: {repository: quay.io/minio/mc, tag: RELEASE.2024-11-21T17-21-54Z}
resources: {requests: {cpu: 500m}}
"""


def test_helm_values_images_in_the_shapes_edgefm_uses() -> None:
    values = {
        "image": {"repository": "quay.io/minio/minio", "tag": "RELEASE.1"},
        "driver": {"repository": "nvcr.io/nvidia", "image": "driver", "version": "570.124.06"},
        "sidecar": {"image": "docker.io/library/busybox:1.36"},
        "toolkit": {
            "enabled": True,
            "env": [{"name": "CONTAINERD_SOCKET", "value": "/run/k3s/containerd.sock"}],
        },
        "dcgm": {"registry": "nvcr.io", "repository": "nvidia/k8s/dcgm", "tag": "3.3.0"},
    }
    found = sorted(helm_value_images(values))
    assert found == [
        ("dcgm", "nvcr.io/nvidia/k8s/dcgm:3.3.0", True),
        ("driver", "nvcr.io/nvidia/driver:570.124.06", True),
        ("image", "quay.io/minio/minio:RELEASE.1", True),
        ("sidecar.image", "docker.io/library/busybox:1.36", True),
    ]


def test_helm_chart_values_are_checked() -> None:
    assert check_images(helm_chart("minio", MINIO_VALUES), DEFAULT) == []
    bad = helm_chart(
        "minio",
        MINIO_VALUES.replace(
            "quay.io/minio/minio, tag: RELEASE.2024-12-18T13-15-44Z", "docker.io/bitnami/minio, tag: latest"
        ),
    )
    messages = [v.message for v in check_images(bad, DEFAULT)]
    assert any("HelmChart 'minio'" in m and "spec.valuesContent image" in m and "latest" in m for m in messages)
    assert any("not an allowed registry" in m for m in messages)


def test_helm_values_without_a_tag_keep_the_charts_pinned_default() -> None:
    # The chart version pins the default tag; only the registry override is judged.
    assert check_images(helm_chart("minio", "image: {repository: quay.io/minio/minio}\n"), DEFAULT) == []
    bad = helm_chart("minio", "image: {repository: docker.io/evil/minio}\n")
    assert len(check_images(bad, DEFAULT)) == 1


def test_a_bare_entry_is_a_registry_host() -> None:
    cfg = ImagesConfig(allowed_registries=("nvcr.io", "rancher"))
    assert image_problems("nvcr.io/anything/at-all:1.0", cfg) == []
    # "rancher" has no dot: it is a (strange) host name, not docker.io's rancher organisation.
    assert image_problems("docker.io/rancher/k3s:v1.31.6-k3s1", cfg) != []
