"""Malformed stack config is rejected with one line per problem naming the stack, key path and fault."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from edgefm.model.placement import load_policy, resolve
from edgefm.model.problems import ConfigError
from edgefm.model.stacks import RawValue, parse_hub, parse_site
from tests.harness import PLACEMENT

STACK = "site-example"


def base_site() -> dict[str, Any]:
    return {
        "edgefm:site": {
            "name": "example",
            "region": "eu-central-1",
            "jurisdiction": "DE",
            "labels": {"tier": "lab", "accelerator": "gpu"},
            "network": "10.1.0.0/24",
            "nodes": [
                {"name": "n1", "address": "10.1.0.11", "gpus": 1, "gpuModel": "L4"},
                {"name": "n2", "address": "10.1.0.12", "gpus": 1, "gpuModel": "L4"},
                {"name": "n3", "address": "10.1.0.13", "gpus": 1, "gpuModel": "L4"},
            ],
        },
        "edgefm:sshPrivateKey": RawValue("key", secret=True),
    }


def problems_for(raw: dict[str, Any], resolve_too: bool = True) -> list[str]:
    cfg = {k: v if isinstance(v, RawValue) else RawValue(v, secret=False) for k, v in raw.items()}
    try:
        parsed = parse_site(STACK, cfg, env={})
        if resolve_too:
            resolve(STACK, parsed.site, load_policy(PLACEMENT))
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    return []


def site(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    raw = base_site()
    mutate(raw["edgefm:site"])
    return raw


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value

    return apply


def _del(path: str) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        del node[leaf]

    return apply


def _dup_node(doc: dict[str, Any]) -> None:
    doc["nodes"][1]["name"] = "n1"


def _dup_addr(doc: dict[str, Any]) -> None:
    doc["nodes"][2]["address"] = "10.1.0.11"


def _even_nodes(doc: dict[str, Any]) -> None:
    doc["nodes"].pop()


def _cpu_with_gpu_profile(doc: dict[str, Any]) -> None:
    for n in doc["nodes"]:
        n.pop("gpus")
        n.pop("gpuModel")


def _mig_on_l4(doc: dict[str, Any]) -> None:
    doc["overrides"] = {"gpuOperator.sharing": {"mode": "mig", "replicas": 7, "migProfile": "all-1g.10gb"}}


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    # (id, mutation of edgefm:site, expected key path, expected message fragment)
    ("missing-nodes", _del("nodes"), "edgefm:site.nodes", "required key is missing"),
    ("empty-nodes", _set("nodes", []), "edgefm:site.nodes", "at least 1 item"),
    ("duplicate-node-name", _dup_node, "edgefm:site.nodes[1].name", "duplicate node name n1 (also nodes[0])"),
    ("duplicate-address", _dup_addr, "edgefm:site.nodes[2].address", "duplicate node address 10.1.0.11"),
    ("malformed-ip", _set("nodes.0.address", "10.1.0.300"), "edgefm:site.nodes[0].address", "is not an IP address"),
    (
        "address-outside-network",
        _set("nodes.0.address", "10.9.0.1"),
        "edgefm:site.nodes[0].address",
        "outside the site network",
    ),
    ("malformed-cidr", _set("network", "10.1.0.0/33"), "edgefm:site.network", "not a CIDR block"),
    ("cidr-host-bits", _set("network", "10.1.0.5/24"), "edgefm:site.network", "has host bits set"),
    ("gpus-without-model", _del("nodes.0.gpuModel"), "edgefm:site.nodes[0].gpuModel", "has 1 GPUs but no gpuModel"),
    (
        "model-without-gpus",
        _set("nodes.0.gpus", 0),
        "edgefm:site.nodes[0].gpus",
        "names gpuModel L4 but gpus is 0",
    ),
    ("negative-gpus", _set("nodes.0.gpus", -1), "edgefm:site.nodes[0].gpus", "greater than or equal to 0"),
    ("absurd-gpus", _set("nodes.0.gpus", 64), "edgefm:site.nodes[0].gpus", "less than or equal to 16"),
    (
        "unknown-gpu-model",
        _set("nodes.0.gpuModel", "GTX-1080"),
        "edgefm:site.nodes[0].gpuModel",
        "unknown GPU model",
    ),
    ("unknown-label", _set("labels.colour", "blue"), "edgefm:site.labels.colour", "unknown label"),
    (
        "label-value-not-allowed",
        _set("labels.tier", "gold"),
        "edgefm:site.labels.tier",
        "value 'gold' not allowed",
    ),
    (
        "unknown-jurisdiction",
        _set("jurisdiction", "XX"),
        "edgefm:site.jurisdiction",
        "unknown jurisdiction 'XX'",
    ),
    (
        "lowercase-jurisdiction",
        _set("jurisdiction", "de"),
        "edgefm:site.jurisdiction",
        "unknown jurisdiction",
    ),
    ("unknown-subdivision", _set("jurisdiction", "US-ZZ"), "edgefm:site.jurisdiction", "ISO 3166-2"),
    (
        "bad-region",
        _set("region", "Europe Central"),
        "edgefm:site.region",
        "must be a region name such as eu-central-1",
    ),
    ("bad-name", _set("name", "Bridge_North"), "edgefm:site.name", "must be a DNS label: lowercase letters"),
    ("unknown-key", _set("colour", "blue"), "edgefm:site.colour", "unknown key"),
    ("even-node-count", _even_nodes, "edgefm:site.nodes", "odd number of server nodes"),
    (
        "distribution-mode-mismatch",
        _set("cluster", {"mode": "k3s", "distribution": "openshift"}),
        "edgefm:site.cluster.distribution",
        "needs mode existing",
    ),
    # No coercion: a count is an integer, a name is text; YAML's yes/no/on/off are booleans, not numbers.
    (
        "gpus-as-boolean",
        _set("nodes.0.gpus", True),
        "edgefm:site.nodes[0].gpus",
        "must be an integer, got the boolean true",
    ),
    ("gpus-as-text", _set("nodes.0.gpus", "1"), "edgefm:site.nodes[0].gpus", "must be an integer, got '1'"),
    ("label-as-number", _set("labels.tier", 2), "edgefm:site.labels.tier", "must be a string, got 2; quote it"),
    (
        "flag-as-text",
        _set("allowExternalServices", "yes"),
        "edgefm:site.allowExternalServices",
        "must be true or false",
    ),
    ("address-as-number", _set("nodes.0.address", 167837963), "edgefm:site.nodes[0].address", "written as text"),
    ("reserved-name-hub", _set("name", "hub"), "edgefm:site.name", "site name 'hub' is reserved by the hub"),
    ("reserved-name-edgefm", _set("name", "edgefm"), "edgefm:site.name", "reserved by the hub"),
    (
        "api-address-outside",
        _set("cluster", {"mode": "k3s", "apiAddress": "10.9.0.1"}),
        "edgefm:site.cluster.apiAddress",
        "outside the site network",
    ),
    (
        "override-not-allowed",
        _set("overrides", {"serving.image": "nvcr.io/nvidia/tritonserver:24.01-py3"}),
        "edgefm:site.overrides.serving.image",
        "not overridable",
    ),
    (
        "override-floating-version",
        _set("overrides", {"gpuOperator.sharing": {"mode": "time-slicing", "replicas": 0}}),
        "edgefm:site.overrides.gpuOperator.sharing.replicas",
        "greater than or equal to 1",
    ),
    (
        "gpu-labels-cpu-nodes",
        _cpu_with_gpu_profile,
        "gpuOperator.enabled (from profile:gpu)",
        "no node has GPUs",
    ),
    (
        "mig-unsupported",
        _mig_on_l4,
        "gpuOperator.sharing.mode (from override)",
        "MIG is not supported by GPU model L4",
    ),
    (
        "too-many-replicas",
        _set("overrides", {"serving.replicas": 5}),
        "serving.replicas (from override)",
        "ask for 5 GPUs",
    ),
]


@pytest.mark.parametrize(("mutate", "path", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_site_is_rejected(mutate: Callable[[dict[str, Any]], None], path: str, fragment: str) -> None:
    problems = problems_for(site(mutate))
    assert problems, "config should have been rejected"
    expected_prefix = f"{STACK}: {path}: "
    matching = [p for p in problems if p.startswith(expected_prefix) and fragment in p]
    assert matching, f"no problem at {path!r} mentioning {fragment!r}; got {problems}"


def test_the_base_site_is_valid() -> None:
    assert problems_for(base_site()) == []


def test_secret_given_in_plain_text_is_rejected() -> None:
    raw = base_site()
    raw["edgefm:sshPrivateKey"] = "-----BEGIN OPENSSH PRIVATE KEY-----"
    assert problems_for(raw, resolve_too=False) == [
        f"{STACK}: edgefm:sshPrivateKey: must be a secret: set it with `pulumi config set --secret sshPrivateKey`"
    ]


def test_missing_ssh_key_is_rejected_unless_rendering() -> None:
    raw = base_site()
    del raw["edgefm:sshPrivateKey"]
    assert problems_for(raw) == [f"{STACK}: edgefm:sshPrivateKey: required to bootstrap k3s over SSH"]
    cfg = {k: v if isinstance(v, RawValue) else RawValue(v, False) for k, v in raw.items()}
    assert parse_site(STACK, cfg, env={"EDGEFM_RENDER_ROOT": "/tmp/out"}).render_dir == "/tmp/out/site-example"


def test_existing_cluster_needs_kubeconfig() -> None:
    raw = base_site()
    raw["edgefm:site"]["cluster"] = {"mode": "existing", "distribution": "openshift"}
    problems = problems_for(raw)
    assert f"{STACK}: edgefm:kubeconfig: required for an existing cluster" in problems


def test_site_name_must_match_stack() -> None:
    raw = base_site()
    raw["edgefm:site"]["name"] = "other"
    assert f"{STACK}: edgefm:site.name: is 'other' but the stack is named for 'example'" in problems_for(raw)


def test_unknown_edgefm_key_is_rejected() -> None:
    raw = base_site()
    raw["edgefm:sshKey"] = "x"
    assert any(p.startswith(f"{STACK}: edgefm:sshKey: unknown key") for p in problems_for(raw))


def test_every_problem_is_reported_at_once() -> None:
    raw = base_site()
    raw["edgefm:site"]["jurisdiction"] = "XX"
    raw["edgefm:site"]["nodes"][0]["address"] = "not-an-ip"
    raw["edgefm:site"]["network"] = "10.0.0.0/99"
    assert len(problems_for(raw)) >= 3


def hub_raw(**changes: Any) -> dict[str, RawValue]:
    hub: dict[str, Any] = {
        "flavor": "datacenter",
        "region": "eu-central-1",
        "jurisdiction": "DE",
        "endpoint": "hub.example.net",
        "registry": {"bucket": "edgefm-models"},
    }
    hub.update(changes)
    return {
        "edgefm:hub": RawValue(copy.deepcopy(hub), False),
        "edgefm:kubeconfig": RawValue("kc", True),
        "edgefm:credentialSeed": RawValue("seed", True),
        "edgefm:grafanaAdminPassword": RawValue("pw", True),
    }


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({"flavor": "gcp"}, "edgefm:hub.flavor", "'aws' or 'datacenter'"),
        ({"registry": {"bucket": "Bad_Bucket"}}, "edgefm:hub.registry.bucket", "must be a bucket name: 3 to 63"),
        (
            {"registry": {"bucket": "edgefm-models", "noncurrentVersionDays": -5}},
            "edgefm:hub.registry.noncurrentVersionDays",
            ">= 1",
        ),
        (
            {"telemetry": {"retentionDays": 100000}},
            "edgefm:hub.telemetry.retentionDays",
            "less than or equal to 3650",
        ),
        ({"jurisdiction": "EU"}, "edgefm:hub.jurisdiction", "unknown jurisdiction"),
    ],
)
def test_malformed_hub_is_rejected(changes: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_hub("hub", hub_raw(**changes), env={})
    lines = [str(p) for p in info.value.problems]
    assert any(
        line.startswith(f"hub: {path}: ") and fragment.replace(">= 1", "greater than or equal to 1") in line
        for line in lines
    ), lines


def test_datacenter_hub_needs_seed() -> None:
    raw = hub_raw()
    del raw["edgefm:credentialSeed"]
    with pytest.raises(ConfigError, match="credentialSeed: required"):
        parse_hub("hub", raw, env={})
