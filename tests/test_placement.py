"""Placement: selector semantics, precedence, overrides and the placement file's own validation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgefm.model.config import SiteSpec
from edgefm.model.placement import LabelSelector, load_policy, parse_policy, resolve
from edgefm.model.problems import ConfigError
from tests.harness import PLACEMENT, STACKS, site_from_file

LABELS = {"tier": "production", "accelerator": "gpu", "wave": "2"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ({}, True),
        ({"matchLabels": {"tier": "production"}}, True),
        ({"matchLabels": {"tier": "staging"}}, False),
        ({"matchLabels": {"tier": "production", "accelerator": "cpu"}}, False),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["staging", "production"]}]},
            True,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["staging"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["staging"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["production"]}]}, False),
        # NotIn matches a site that lacks the label altogether, as in Kubernetes.
        ({"matchExpressions": [{"key": "finetune", "operator": "NotIn", "values": ["enabled"]}]}, True),
        ({"matchExpressions": [{"key": "wave", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "finetune", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "finetune", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False),
        (
            {
                "matchLabels": {"accelerator": "gpu"},
                "matchExpressions": [{"key": "wave", "operator": "In", "values": ["1", "2"]}],
            },
            True,
        ),
    ],
)
def test_label_selector(selector: dict[str, Any], matches: bool) -> None:
    assert LabelSelector.model_validate(selector).matches(LABELS) is matches


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ({"key": "tier", "operator": "In", "values": []}, "needs a non-empty values list"),
        ({"key": "tier", "operator": "Exists", "values": ["x"]}, "takes no values"),
        ({"key": "tier", "operator": "Like", "values": ["x"]}, "'In', 'NotIn', 'Exists' or 'DoesNotExist'"),
    ],
)
def test_malformed_selector(expression: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        LabelSelector.model_validate({"matchExpressions": [expression]})


def policy_doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(PLACEMENT.read_text())
    return doc


def site(labels: dict[str, str], gpus: int = 1, overrides: dict[str, Any] | None = None) -> SiteSpec:
    return SiteSpec.model_validate(
        {
            "name": "t",
            "region": "eu-central-1",
            "jurisdiction": "DE",
            "labels": labels,
            "network": "10.0.0.0/24",
            "nodes": [
                {
                    "name": f"n{i}",
                    "address": f"10.0.0.{10 + i}",
                    **({"gpus": gpus, "gpuModel": "L40S"} if gpus else {}),
                }
                for i in range(3)
            ],
            "overrides": overrides or {},
        }
    )


@pytest.mark.parametrize(
    ("labels", "gpus", "matched", "checks"),
    [
        (
            {"accelerator": "cpu", "tier": "lab"},
            0,
            ["cpu-only"],
            {"serving.replicas": 2, "serving.gpusPerReplica": 0},
        ),
        (
            {"accelerator": "gpu", "tier": "lab"},
            1,
            ["gpu"],
            {"gpuOperator.enabled": True, "fineTuning.enabled": False},
        ),
        (
            {"accelerator": "gpu", "tier": "production", "finetune": "enabled"},
            1,
            ["gpu", "finetune", "production"],
            {"fineTuning.enabled": True, "serving.replicas": 2, "modelSync.schedule": "5 * * * *"},
        ),
        # finetune=enabled on a CPU site does not match the finetune profile (its selector needs a GPU).
        ({"accelerator": "cpu", "finetune": "enabled"}, 0, ["cpu-only"], {"fineTuning.enabled": False}),
        ({"accelerator": "gpu", "tier": "canary"}, 1, ["gpu", "canary"], {"model.version": "1.1.0"}),
    ],
)
def test_profiles_resolve_in_precedence_order(
    labels: dict[str, str], gpus: int, matched: list[str], checks: dict[str, Any]
) -> None:
    resolved = resolve("site-t", site(labels, gpus), load_policy(PLACEMENT))
    assert resolved.matched == matched
    dumped = resolved.profile.model_dump(by_alias=True)
    for key, expected in checks.items():
        value: Any = dumped
        for part in key.split("."):
            value = value[part]
        assert value == expected, key


def test_higher_priority_wins_and_sources_are_recorded() -> None:
    resolved = resolve("site-t", site({"accelerator": "gpu", "tier": "production"}), load_policy(PLACEMENT))
    assert resolved.profile.serving.replicas == 2
    assert resolved.sources["serving.replicas"] == "profile:production"
    assert resolved.sources["serving.gpusPerReplica"] == "profile:gpu"
    assert resolved.sources["serving.image"] == "defaults"


def test_equal_priority_conflict_is_an_error() -> None:
    doc = policy_doc()
    doc["profiles"].append(
        {
            "name": "rival",
            "priority": 30,
            "selector": {"matchLabels": {"tier": "production"}},
            "set": {"serving": {"replicas": 3}},
        }
    )
    with pytest.raises(ConfigError, match="profiles production and rival have equal priority 30"):
        resolve("site-t", site({"accelerator": "gpu", "tier": "production"}), parse_policy(doc))


def test_equal_priority_agreeing_values_are_fine() -> None:
    doc = policy_doc()
    doc["profiles"].append(
        {
            "name": "twin",
            "priority": 30,
            "selector": {"matchLabels": {"tier": "production"}},
            "set": {"serving": {"replicas": 2}},
        }
    )
    assert (
        resolve(
            "site-t", site({"accelerator": "gpu", "tier": "production"}), parse_policy(doc)
        ).profile.serving.replicas
        == 2
    )


def test_allowed_override_applies_and_is_attributed() -> None:
    resolved = resolve(
        "site-t", site({"accelerator": "gpu"}, overrides={"serving.replicas": 3}), load_policy(PLACEMENT)
    )
    assert resolved.profile.serving.replicas == 3
    assert resolved.sources["serving.replicas"] == "override"


def test_no_matching_profile_is_an_error() -> None:
    doc = policy_doc()
    doc["profiles"] = [p for p in doc["profiles"] if p["name"] != "cpu-only"]
    with pytest.raises(ConfigError, match="no placement profile matches"):
        resolve("site-t", site({"accelerator": "cpu"}, gpus=0), parse_policy(doc))


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["profiles"].append(copy.deepcopy(d["profiles"][0])), "duplicate profile name gpu"),
        (
            lambda d: d["profiles"][0]["selector"].update(matchLabels={"colour": "red"}),
            "unknown label 'colour'",
        ),
        (
            lambda d: d["profiles"][0]["selector"].update(matchLabels={"tier": "gold"}),
            "label tier has no value 'gold'",
        ),
        (
            lambda d: d["profiles"][0]["set"].update(servng={"replicas": 1}),
            "servng.replicas: not a profile key",
        ),
        (
            lambda d: d["profiles"][0]["overridable"].append("serving.replica"),
            "'serving.replica' is not a profile key",
        ),
        (lambda d: d["defaults"]["serving"].update(image="nvcr.io/nvidia/tritonserver:latest"), "floats"),
        (lambda d: d["defaults"]["gpuOperator"]["chart"].update(version="~25.3"), "is a range"),
        (lambda d: d["defaults"]["storage"].update(minioImage="quay.io/minio/minio"), "floats"),
        (lambda d: d["profiles"][0]["set"]["serving"].update(replicas=0), "greater than or equal to 1"),
        (lambda d: d.update(kind="Placement"), "must be one of 'PlacementPolicy', got 'Placement'"),
    ],
)
def test_malformed_placement_file(mutate: Any, fragment: str) -> None:
    doc = policy_doc()
    mutate(doc)
    with pytest.raises(ConfigError) as info:
        parse_policy(doc)
    assert any(fragment in str(p) for p in info.value.problems), [str(p) for p in info.value.problems]


def test_changing_one_version_in_a_profile_reaches_exactly_its_sites(tmp_path: Path) -> None:
    """The central-update promise: bump a version in one profile, only the sites it matches change."""
    before = {p.stem: site_from_file(p)[1].profile for p in sorted(STACKS.glob("Pulumi.site-*.yaml"))}
    doc = policy_doc()
    next(p for p in doc["profiles"] if p["name"] == "production")["set"]["serving"]["image"] = (
        "nvcr.io/nvidia/tritonserver:25.02-py3"
    )
    policy = parse_policy(doc)
    changed = set()
    for path in sorted(STACKS.glob("Pulumi.site-*.yaml")):
        parsed, _ = site_from_file(path)
        after = resolve(parsed.stack, parsed.site, policy).profile
        if after != before[path.stem]:
            changed.add(parsed.stack)
    assert changed == {"site-bridge-north", "site-harbor-ocp"}


@pytest.mark.parametrize("allowed", [False, True])
def test_exposing_triton_needs_the_sites_allowance(allowed: bool) -> None:
    doc = policy_doc()
    next(p for p in doc["profiles"] if p["name"] == "gpu")["overridable"].append("serving.expose")
    spec = site({"accelerator": "gpu"}, overrides={"serving.expose": "loadbalancer"})
    spec = spec.model_copy(update={"allow_external_services": allowed})
    if allowed:
        assert resolve("site-t", spec, parse_policy(doc)).profile.serving.expose == "loadbalancer"
    else:
        with pytest.raises(ConfigError, match="does not set allowExternalServices"):
            resolve("site-t", spec, parse_policy(doc))
