"""The CrossGuard wrappers, fed what pulumi_policy hands them (proxied properties, unknown sentinels)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from edgefm_guardrails import config as cfg_module
from edgefm_guardrails.crossguard import (
    PACK_NAME,
    Guardrail,
    guardrails,
    plain,
    resource_from_args,
    resource_from_stack,
)
from edgefm_guardrails.model import UNKNOWN
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import (
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
    unknown_checking_proxy,
)

from tests.guardrails.guardrail_builders import HUB, container, deployment, facts, service

OPTS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def engine_props(props: Mapping[str, Any]) -> Any:
    """Properties as pulumi_policy's analyzer builds them from the engine's protobuf Struct."""
    return unknown_checking_proxy(deserialize_properties(json.loads(json.dumps(props))))


def recorder(reported: list[tuple[str, str | None]]) -> ReportViolation:
    def report(message: str, urn: str | None = None) -> None:
        reported.append((message, urn))

    return report


def by_name() -> dict[str, Guardrail]:
    return {g.name: g for g in guardrails()}


def run_resource_policy(
    name: str, props: Mapping[str, Any], type_: str, urn: str, config: Mapping[str, Any] | None = None
) -> list[tuple[str, str | None]]:
    policy = by_name()[name].policy
    assert isinstance(policy, ResourceValidationPolicy)
    reported: list[tuple[str, str | None]] = []
    args = ResourceValidationArgs(type_, engine_props(props), urn, urn.rsplit("::", 1)[-1], OPTS, None, config or {})
    policy.validate(args, recorder(reported))
    return reported


def policy_resource(r: Any) -> PolicyResource:
    return PolicyResource(r.type, engine_props(r.props), r.urn, r.name, OPTS, None, None, [], {})


def run_stack_policy(
    name: str, resources: list[Any], config: Mapping[str, Any] | None = None
) -> list[tuple[str, str | None]]:
    policy = by_name()[name].policy
    assert isinstance(policy, StackValidationPolicy)
    reported: list[tuple[str, str | None]] = []
    args = StackValidationArgs([policy_resource(r) for r in resources], config or {})
    policy.validate(args, recorder(reported))
    return reported


def test_plain_turns_unknowns_into_markers_instead_of_raising() -> None:
    props = engine_props({"a": {"b": UNKNOWN_STRING_VALUE, "c": [1, UNKNOWN_NUMBER_VALUE]}, "d": "x"})
    with pytest.raises(UnknownValueError):
        props["a"]["b"]  # what a check reading the proxy directly would hit
    assert plain(props) == {"a": {"b": UNKNOWN, "c": [1, UNKNOWN]}, "d": "x"}


def test_resource_policy_reports_through_crossguard() -> None:
    d = deployment("triton", [container("triton", "nvcr.io/nvidia/tritonserver:latest")])
    reported = run_resource_policy("images-pinned-allowed-registries", d.props, d.type, d.urn)
    assert reported == [
        (
            "Deployment 'triton' in namespace edgefm: container 'triton': image "
            "'nvcr.io/nvidia/tritonserver:latest' uses the floating tag 'latest'; pin a version or digest",
            None,
        )
    ]


def test_resource_policy_reads_its_config() -> None:
    d = deployment("triton", [container("triton", "registry.site.local/triton:25.01")])
    assert run_resource_policy("images-pinned-allowed-registries", d.props, d.type, d.urn) != []
    config = {"allowedRegistries": ["registry.site.local"]}
    assert run_resource_policy("images-pinned-allowed-registries", d.props, d.type, d.urn, config) == []


def test_unknown_values_in_preview_do_not_abort_the_policy() -> None:
    c = container("triton", "nvcr.io/nvidia/tritonserver:25.01-py3")
    c["image"] = UNKNOWN_STRING_VALUE
    bad = container("sidecar", "docker.io/library/busybox:latest")
    d = deployment("triton", [c, bad])
    reported = run_resource_policy("images-pinned-allowed-registries", d.props, d.type, d.urn)
    assert [m for m, _ in reported if "sidecar" in m] and not [m for m, _ in reported if "'triton'" in m.split(":")[1]]


def test_stack_policy_reports_with_urns_and_dependencies() -> None:
    svc = service("triton", "LoadBalancer")
    reported = run_stack_policy("k8s-no-external-services", [facts(), svc])
    assert [u for _, u in reported] == [svc.urn]


def test_stack_policy_not_applicable_goes_through_crossguard() -> None:
    with pytest.raises(_NotApplicableError):
        run_stack_policy("gpu-capacity", [service("grafana", stack=HUB)])


def test_resource_from_stack_keeps_property_dependencies() -> None:
    bucket = PolicyResource(
        "aws:s3/bucket:Bucket", engine_props({"bucket": "b"}), "urn:b", "b", OPTS, None, None, [], {}
    )
    pab = PolicyResource(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        engine_props({"bucket": UNKNOWN_STRING_VALUE}),
        "urn:p",
        "p",
        OPTS,
        None,
        None,
        [bucket],
        {"bucket": [bucket]},
    )
    r = resource_from_stack(pab)
    assert r.property_dependencies == {"bucket": ("urn:b",)} and r.dependencies == ("urn:b",)
    assert r.props == {"bucket": UNKNOWN}
    args = ResourceValidationArgs("t", engine_props({"x": 1}), "urn:x", "x", OPTS, None)
    assert resource_from_args(args).props == {"x": 1}


def test_resource_options_reach_the_checks() -> None:
    """`protect` comes with every resource the analyzer sees; `retainOnDelete` is not in the protocol."""
    protected = PolicyResourceOptions(True, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    r = resource_from_stack(PolicyResource("t", engine_props({}), "urn:t", "t", protected, None, None, [], {}))
    assert r.protect is True and r.retain_on_delete is None
    args = ResourceValidationArgs("t", engine_props({}), "urn:x", "x", OPTS, None)
    assert resource_from_args(args).protect is False


def test_the_pack_lists_every_policy_once_with_its_level() -> None:
    names = [g.name for g in guardrails()]
    assert len(names) == len(set(names)) == 19
    advisory = {g.name for g in guardrails() if g.level == EnforcementLevel.ADVISORY}
    assert advisory == {"k8s-required-labels"}
    assert PACK_NAME == "edgefm-guardrails"


SETTINGS = [
    cfg_module.ImagesConfig,
    cfg_module.ResourcesConfig,
    cfg_module.PodSecurityConfig,
    cfg_module.RbacConfig,
    cfg_module.ExternalServicesConfig,
    cfg_module.CapacityConfig,
    cfg_module.StorageConfig,
    cfg_module.SovereigntyConfig,
    cfg_module.IdentityConfig,
    cfg_module.LabelsConfig,
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_schema_defaults_are_the_code_defaults(settings: Any) -> None:
    """What `pulumi policy` shows as defaults is what the policy applies without a config file."""
    from_schema = {k: v["default"] for k, v in settings.PROPERTIES.items()}
    assert settings.from_config(from_schema) == settings.from_config({}) == settings()
    assert len(settings.PROPERTIES) == len(fields(settings))
    for prop in settings.PROPERTIES.values():
        assert prop["type"] in ("array", "boolean", "integer") and prop["description"]


README = Path(__file__).resolve().parents[2] / "policies" / "guardrails" / "README.md"


def test_readme_documents_every_policy_and_key() -> None:
    text = README.read_text()
    for g in guardrails():
        assert f"`{g.name}`" in text, g.name
        schema = g.policy.config_schema
        for key in schema.properties if schema else {}:
            assert f"`{key}`" in text, f"{g.name}.{key}"


def test_readme_names_the_standard_each_policy_follows() -> None:
    rows = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0].startswith("`") and cells[1] in ("mandatory", "advisory"):
            rows[cells[0].strip("`")] = cells
    assert set(rows) == {g.name for g in guardrails()}
    for g in guardrails():
        level, standard = rows[g.name][1], rows[g.name][3]
        assert level == g.level.value.lower(), g.name
        assert standard, g.name


def test_readme_example_config_is_valid() -> None:
    example = json.loads(README.read_text().split("```json", 1)[1].split("```", 1)[0])
    known = by_name()
    for policy, settings in example.items():
        schema = known[policy].policy.config_schema
        keys = set(schema.properties) if schema else set()
        assert set(settings) - {"enforcementLevel"} <= keys, policy
        known[policy].evaluate([], {k: v for k, v in settings.items() if k != "enforcementLevel"})
