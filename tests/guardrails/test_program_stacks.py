"""The guardrails over what the real program registers for the sample fleet (Pulumi runtime mocks, see
tests/harness.py): the conventions the pack relies on hold, and the program passes its own guardrails."""

from __future__ import annotations

import pytest
import yaml
from edgefm_guardrails.crossguard import evaluate
from edgefm_guardrails.model import Resource, Violation

from tests import harness

STACKS = harness.STACKS
SITE_FILES = sorted(STACKS.glob("Pulumi.site-*.yaml"))
SITES = [p.name.removeprefix("Pulumi.site-").removesuffix(".yaml") for p in SITE_FILES]
TLS = "storage-tls-only"


def resources_of(run: harness.Run) -> list[Resource]:
    out = []
    for rec in run.resources:
        out.append(
            Resource(
                rec.urn,
                rec.type,
                rec.name,
                harness.unwrap(rec.inputs),
                rec.property_dependencies,
                protect=rec.protect,
                retain_on_delete=rec.retain_on_delete,
            )
        )
    return out


def site_stack(name: str) -> list[Resource]:
    return resources_of(harness.run_site_file(STACKS / f"Pulumi.site-{name}.yaml"))


def hub_stack(flavor: str) -> list[Resource]:
    hub = yaml.safe_load((STACKS / "Pulumi.hub.yaml").read_text())["config"]["edgefm:hub"]
    run = harness.run_hub_file(STACKS / "Pulumi.hub.yaml", overrides={"edgefm:hub": {**hub, "flavor": flavor}})
    return resources_of(run)


def access_stack(flavor: str) -> list[Resource]:
    """An access shard serving every sample site (the site identities live here)."""
    hub = yaml.safe_load((STACKS / "Pulumi.hub.yaml").read_text())["config"]["edgefm:hub"]
    keys = {s: harness.fixed_site_keys(s).public_key for s in SITES}
    run = harness.run_access(STACKS / "Pulumi.hub.yaml", keys, overrides={"edgefm:hub": {**hub, "flavor": flavor}})
    return resources_of(run)


def stack_resources(stack: str) -> list[Resource]:
    if stack.startswith("access-"):
        return access_stack(stack.removeprefix("access-"))
    return (
        hub_stack(stack.removeprefix("hub-")) if stack.startswith("hub-") else site_stack(stack.removeprefix("site-"))
    )


def show(found: dict[str, list[Violation]]) -> str:
    return "\n".join(f"{policy}: {v.message}" for policy, vs in found.items() for v in vs)


STACK_IDS = [f"site-{s}" for s in SITES] + ["hub-datacenter", "hub-aws", "access-datacenter", "access-aws"]


@pytest.mark.parametrize("stack", STACK_IDS)
def test_program_passes_every_guardrail_but_tls(stack: str) -> None:
    found = evaluate(stack_resources(stack))
    found.pop(TLS, None)
    assert found == {}, show(found)


@pytest.mark.parametrize("stack", STACK_IDS)
def test_program_reaches_object_storage_over_tls(stack: str) -> None:
    found = evaluate(stack_resources(stack))
    assert TLS not in found, show({TLS: found.get(TLS, [])})


def test_conventions_the_pack_relies_on() -> None:
    resources = site_stack("bridge-north")
    facts = [r for r in resources if r.kind == "ConfigMap" and r.get("metadata", "name") == "edgefm-site-facts"]
    assert len(facts) == 1 and facts[0].get("metadata", "namespace") == "edgefm-system"
    buckets = {r.get("metadata", "labels", "edgefm.io/bucket") for r in resources if r.kind == "Job"}
    assert {"datasets", "models", "checkpoints"} <= buckets
    # The policies are not vacuous here: a GPU workload, site-labelled objects and a datasets reader exist.
    from edgefm_guardrails.capacity import gpu_demands

    demands, unknown = gpu_demands(resources, 3)
    assert sum(d.total for d in demands) == 3 and unknown == []
    assert any("EDGEFM_DATASETS_BUCKET" in str(r.props) for r in resources if r.kind == "Job")


def test_breaking_the_program_output_is_caught() -> None:
    """Guards the integration itself: the same path reports a mutated stack."""
    resources = site_stack("bridge-north")
    triton = next(r for r in resources if r.kind == "Deployment" and "triton" in r.name)
    triton.props["spec"]["replicas"] = 5
    triton.props["spec"]["template"]["spec"]["containers"][0]["image"] = "nvcr.io/nvidia/tritonserver:latest"
    found = evaluate(resources)
    assert {"gpu-capacity", "images-pinned-allowed-registries"} <= set(found)
