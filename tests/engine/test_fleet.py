"""The sample fleet on the real Pulumi engine, through the Automation API, in render mode (file backend,
passphrase secrets, manifests written instead of applied): what `make demo` and a portal do."""

from __future__ import annotations

import base64
import functools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from pulumi import automation as auto

from edgefm.model.stacks import access_stack_of
from edgefm.ops.engine import Manifest, workspace_options
from edgefm.ops.fleet import Fleet
from edgefm.ops.rollout import rollout, site_labels, waves_of
from tests.harness import ROOT, STACKS, run_site_file

pytestmark = pytest.mark.engine

GPU_SITE, CPU_SITE = "site-bridge-north", "site-viaduct-cpu"
# Secret keys in the site's Secrets (the others hold public values: endpoints, user names, the CA certificate).
SECRET_KEYS = {"rootPassword", "config.env", "secretAccessKey", "password", "tls.key"}
PROJECT_FILES = ["Pulumi.yaml", "__main__.py", "edgefm", "components", "policies", "stacks"]


@dataclass
class Env:
    project: Path
    state: Path
    out: Path
    fleet: Fleet


@pytest.fixture(scope="module")
def env(engine: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A copy of the project (stack files and placement get edited), its own backend, and the hub up."""
    root = tmp_path_factory.mktemp("fleet")
    project, state, out = root / "project", root / "state", root / "out"
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            project.mkdir(exist_ok=True)
            shutil.copy2(src, project / name)
    # Pulumi.yaml names the project's .venv; the engine starts dynamic providers from it.
    (project / ".venv").symlink_to(ROOT / ".venv")
    state.mkdir()
    options = functools.partial(workspace_options, manifest=engine, backend_url=state.as_uri())
    # The default: the engine runs the guardrails pack (its executable analyzer) on every preview and update.
    fleet = Fleet(project, options, render_root=out)
    hub = fleet.up("hub")
    assert hub.changes.get("create", 0) > 0
    # The access shards hold the sites' hub-side access and their sealed credentials.
    for shard in ("hub-access-000", "hub-access-001"):
        assert fleet.up(shard).changes.get("create", 0) > 0
    yield Env(project, state, out, fleet)


def _mock_count(stack: str, out: Path) -> int:
    """Resources the program registers in render mode under Pulumi's mocks (the stack resource included)."""
    return len(run_site_file(STACKS / f"Pulumi.{stack}.yaml", render_dir=str(out)).resources)


@pytest.mark.parametrize("stack", [GPU_SITE, CPU_SITE])
def test_preview_update_and_no_op(env: Env, stack: str) -> None:
    preview = env.fleet.preview(stack)
    # The real engine plans exactly the resources the mocks see: the unit tests' graph is the real one.
    assert preview.changes == {"create": _mock_count(stack, env.out)}, preview.changes

    update = env.fleet.up(stack)
    assert update.changes == preview.changes
    docs = [d for f in sorted((env.out / stack).rglob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    assert len(docs) == update.manifests and docs
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "edgefm"
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "CronJob", "HelmChart", "Certificate", "NetworkPolicy"} <= kinds
    assert ("Job" in kinds) and ("ConfigMap" in kinds)

    again = env.fleet.preview(stack)
    assert set(again.changes) == {"same"}, again.changes


def _updated_urns(fleet: Fleet, stack: str) -> dict[str, str]:
    ops: dict[str, str] = {}

    def on_event(event: auto.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is not None and pre.metadata.op.value not in ("same", "read"):
            ops[pre.metadata.urn] = pre.metadata.op.value

    fleet.stack(stack).preview(on_event=on_event)
    return ops


def test_one_version_change_previews_only_where_the_profile_matches(env: Env) -> None:
    for stack in (GPU_SITE, CPU_SITE):
        env.fleet.up(stack)
    placement = env.project / "policies" / "placement.yaml"
    original = placement.read_text()
    doc = yaml.safe_load(original)
    production = next(p for p in doc["profiles"] if p["name"] == "production")
    production["set"]["serving"]["image"] = "nvcr.io/nvidia/tritonserver:25.02-py3"
    placement.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        gpu = _updated_urns(env.fleet, GPU_SITE)
        cpu = _updated_urns(env.fleet, CPU_SITE)
    finally:
        placement.write_text(original)
    assert {urn.rsplit("::", 1)[1]: op for urn, op in gpu.items()} == {"bridge-north-triton": "update"}
    assert cpu == {}


def test_destroy_keeps_only_the_protected_datasets_bucket(env: Env) -> None:
    stack = env.fleet.stack(GPU_SITE)
    env.fleet.up(GPU_SITE)
    env.fleet.destroy(GPU_SITE)
    deployment = stack.export_stack().deployment
    assert deployment is not None
    left = deployment["resources"]
    by_urn = {r["urn"]: r for r in left}
    custom = {r["urn"] for r in left if r.get("custom") and not r["type"].startswith("pulumi:providers:")}
    protected = [urn for urn in custom if by_urn[urn].get("protect")]
    assert [u.rsplit("::", 1)[1] for u in protected] == ["bridge-north-storage-bucket-datasets"]
    # What stays is the datasets bucket and what it lives in (MinIO, its namespace, keys and certificate):
    # exactly the protected resource's dependency closure. Serving, sync, fine-tuning and monitoring are gone.
    closure, todo = set(), list(protected)
    while todo:
        urn = todo.pop()
        if urn in closure or urn not in by_urn:
            continue
        closure.add(urn)
        deps = by_urn[urn].get("dependencies", []) + [
            d for ds in by_urn[urn].get("propertyDependencies", {}).values() for d in ds
        ]
        todo += deps
    assert custom <= closure, sorted(u.rsplit("::", 1)[1] for u in custom - closure)
    names = {u.rsplit("::", 1)[1] for u in custom}
    assert "bridge-north-storage-minio" in names
    assert not names & {
        "bridge-north-triton",
        "bridge-north-model-sync",
        "bridge-north-monitoring-agent",
        "bridge-north-gpu-chart",
    }


def test_no_plaintext_secret_in_state(env: Env) -> None:
    env.fleet.up(CPU_SITE)
    secrets: set[str] = {"demo placeholder for site-viaduct-cpu"}
    # Render mode writes Secrets in plain text: every value there must be encrypted in the state.
    for path in (env.out / CPU_SITE).rglob("*secret*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            values = {**(doc.get("stringData") or {})}
            values.update({k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()})
            secrets.update(str(v) for k, v in values.items() if k in SECRET_KEYS)
    secrets = {s for s in secrets if len(s) >= 16 and "\n" not in s.strip()} | {"demo placeholder for site-viaduct-cpu"}
    assert len(secrets) >= 3
    state_text = "\n".join(p.read_text(errors="replace") for p in env.state.rglob("*.json"))
    assert "ciphertext" in state_text
    leaked = sorted(s[:12] + "…" for s in secrets if s in state_text)
    assert not leaked, leaked


def test_rollout_holds_later_waves_when_a_wave_breaks_a_guardrail(env: Env) -> None:
    """A central change that puts an image from an unapproved registry on CPU sites: wave 1 (viaduct-cpu) is
    stopped by the guardrails before it changes, and wave 2 (bridge-north) is never touched."""
    for stack in (GPU_SITE, CPU_SITE):
        env.fleet.up(stack)
    placement = env.project / "policies" / "placement.yaml"
    original = placement.read_text()
    doc = yaml.safe_load(original)
    cpu = next(p for p in doc["profiles"] if p["name"] == "cpu-only")
    cpu["set"]["serving"]["image"] = "docker.io/someone/tritonserver:25.01-py3"
    gpu = next(p for p in doc["profiles"] if p["name"] == "gpu")
    gpu["set"]["serving"]["memory"] = "20Gi"  # a legitimate change waiting in wave 2
    placement.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        waves = waves_of(site_labels(env.project, [GPU_SITE, CPU_SITE]), "wave")
        assert [(w.label, w.stacks) for w in waves] == [("1", [CPU_SITE]), ("2", [GPU_SITE])]
        report = rollout(env.fleet, waves)
        pending = env.fleet.preview(GPU_SITE)
    finally:
        placement.write_text(original)
    assert list(report.failures) == [CPU_SITE]
    assert "[images-pinned-allowed-registries]" in report.failures[CPU_SITE]
    assert "docker.io/someone/tritonserver" in report.failures[CPU_SITE]
    assert [w.label for w in report.held] == ["2"]
    assert report.runs == []  # nothing was previewed successfully, nothing updated
    assert pending.changes.get("update") == 1  # wave 2's change is still waiting, untouched


def test_onboarding_updates_its_shards_two_objects_in_place(env: Env) -> None:
    """A new site changes its shard's Secret and Ingress in place: nothing created, replaced or deleted, and the
    other shard and the hub have nothing to do."""
    name = "site-bridge-east"
    shards = len(list((env.project / "stacks").glob("Pulumi.hub-access-*.yaml")))
    shard = access_stack_of(name, shards)
    new = env.project / "stacks" / f"Pulumi.{name}.yaml"
    new.write_text(
        (env.project / "stacks" / f"Pulumi.{GPU_SITE}.yaml")
        .read_text()
        .replace("name: bridge-north\n", "name: bridge-east\n")
    )
    try:
        plan = env.fleet.preview(shard)
        assert {op: n for op, n in plan.changes.items() if op != "same"} == {"update": 2}
        assert env.fleet.up(shard).changes.get("update") == 2
        others = [s for s in ("hub", "hub-access-000", "hub-access-001") if s != shard]
        for other in others:
            assert set(env.fleet.preview(other).changes) <= {"same"}, other
    finally:
        new.unlink()
        env.fleet.up(shard)
