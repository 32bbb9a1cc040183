"""`edgefm validate` and `edgefm explain` as a user runs them, plus `run()` refusing bad config."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest
import yaml

from edgefm.program import run
from tests.harness import ROOT, fixed_site_keys, run_program


def edgefm(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgefm", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_validate_sample_fleet_passes() -> None:
    result = edgefm("validate")
    assert result.returncode == 0, result.stderr
    assert "7 stack file(s) (hub + 2 access shard(s) + 4 site(s))" in result.stdout


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "stacks", tmp_path / "stacks")
    shutil.copytree(ROOT / "policies", tmp_path / "policies", ignore=shutil.ignore_patterns("guardrails"))
    return tmp_path


def test_validate_broken_copy_fails_with_field_level_messages(project_copy: Path) -> None:
    path = project_copy / "stacks" / "Pulumi.site-bridge-north.yaml"
    doc = yaml.safe_load(path.read_text())
    site = doc["config"]["edgefm:site"]
    site["nodes"][1]["address"] = "10.20.0.999"
    site["nodes"][2]["gpuModel"] = None
    site["jurisdiction"] = "ZZ"
    doc["config"]["edgefm:sshPrivateKey"] = "plain-text-key"
    path.write_text(yaml.safe_dump(doc))
    result = edgefm("validate", cwd=project_copy)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert "site-bridge-north: edgefm:site.nodes[1].address: value is not a valid IPv4 address" in lines[0] or any(
        "edgefm:site.nodes[1].address" in line for line in lines
    )
    assert any(
        line.startswith("site-bridge-north: edgefm:site.jurisdiction: unknown jurisdiction 'ZZ'") for line in lines
    )
    assert any(
        line.startswith("site-bridge-north: edgefm:site.nodes[2].gpuModel: node n3 has 1 GPUs but no gpuModel")
        for line in lines
    )
    assert any(line.startswith("site-bridge-north: edgefm:sshPrivateKey: must be a secret") for line in lines)
    assert "Traceback" not in result.stderr
    # Only the named file is checked when one is given; the others still pass.
    ok = edgefm("validate", "stacks/Pulumi.site-viaduct-cpu.yaml", cwd=project_copy)
    assert ok.returncode == 0, ok.stderr


def test_validate_reports_broken_placement_file(project_copy: Path) -> None:
    path = project_copy / "policies" / "placement.yaml"
    path.write_text(path.read_text().replace("version: v25.3.0", "version: latest"))
    result = edgefm("validate", cwd=project_copy)
    assert result.returncode == 1
    assert "policies/placement.yaml: defaults.gpuOperator.chart.version: version 'latest' floats" in result.stderr


def test_validate_rejects_bad_yaml(project_copy: Path) -> None:
    (project_copy / "stacks" / "Pulumi.site-bad.yaml").write_text("config: [unclosed")
    result = edgefm("validate", cwd=project_copy)
    assert result.returncode == 1
    assert "site-bad: stack file stacks/Pulumi.site-bad.yaml is not valid YAML: " in result.stderr
    assert "at line 1, column 18" in result.stderr and "Traceback" not in result.stderr


def test_explain_json() -> None:
    result = edgefm("explain", "site-bridge-north", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["matchedProfiles"] == ["gpu", "finetune", "production"]
    assert data["components"] == [
        "ApplianceCluster",
        "SiteStorage",
        "GpuOperator",
        "ModelSync",
        "FineTuning",
        "ModelServing",
        "Monitoring",
    ]
    assert data["profile"]["serving"]["replicas"] == 2
    assert data["sources"]["serving.replicas"] == "profile:production"


def test_explain_text_and_unknown_stack() -> None:
    text = edgefm("explain", "site-viaduct-cpu")
    assert text.returncode == 0 and "matched profiles (in precedence order): cpu-only" in text.stdout
    missing = edgefm("explain", "site-nowhere")
    assert missing.returncode == 1 and "not found" in missing.stderr
    bad = edgefm("explain", "production")
    assert bad.returncode == 1 and "stack names are `hub`, `hub-access-NNN` or `site-<name>`" in bad.stderr


def test_program_refuses_bad_config_before_registering_anything() -> None:
    site = yaml.safe_load((ROOT / "stacks" / "Pulumi.site-bridge-north.yaml").read_text())["config"]["edgefm:site"]
    site["nodes"][0]["gpus"] = -3
    pulumi.runtime.set_all_config({"edgefm:site": json.dumps(site), "edgefm:renderDir": "/tmp/x"}, secret_keys=[])
    errors: list[BaseException] = []

    def program() -> None:
        try:
            run("site-bridge-north", ROOT)
        except pulumi.RunError as exc:
            errors.append(exc)

    try:
        recorded = run_program(program, "site-bridge-north")
    finally:
        pulumi.runtime.set_all_config({}, secret_keys=[])
    assert errors and "1 config problem(s); nothing was changed" in str(errors[0])
    assert [r.type for r in recorded.resources] == ["pulumi:pulumi:Stack"]


def test_program_builds_a_site_from_engine_config() -> None:
    doc = yaml.safe_load((ROOT / "stacks" / "Pulumi.site-viaduct-cpu.yaml").read_text())["config"]
    keys = fixed_site_keys("viaduct-cpu")
    config = {
        "edgefm:site": json.dumps(doc["edgefm:site"]),
        "edgefm:sshPrivateKey": "key-from-engine",
        "edgefm:siteKey": keys.private_key,
        "edgefm:sitePublicKey": keys.public_key,
    }
    pulumi.runtime.set_all_config(config, secret_keys=["edgefm:sshPrivateKey", "edgefm:siteKey"])
    try:
        recorded = run_program(lambda: run("site-viaduct-cpu", ROOT), "site-viaduct-cpu")
    finally:
        pulumi.runtime.set_all_config({}, secret_keys=[])
    assert recorded.counts()["edgefm:spoke:SpokeAppliance"] == 1
    assert recorded.counts()["command:remote:Command"] == 5
