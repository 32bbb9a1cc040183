"""A profile that follows a registry channel is pinned to the channel's version when the program or
`edgefm explain` runs — against a real registry on the test MinIO."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgefm.model.placement import load_policy, parse_policy, resolve
from edgefm.model.problems import ConfigError
from edgefm.program.pin import pin_channel, registry_resolver
from edgefm.registry.channels import promote
from edgefm.registry.publish import publish
from edgefm.registry.store import Store
from tests.harness import PLACEMENT, ROOT, STACKS, site_from_file
from tests.registry.helpers import write_model

pytestmark = pytest.mark.s3


def _following_policy() -> object:
    doc = yaml.safe_load(PLACEMENT.read_text())
    canary = next(p for p in doc["profiles"] if p["name"] == "canary")
    canary["set"]["model"] = {"channel": "canary"}
    return doc


def test_channel_is_pinned_to_the_promoted_version(registry: Store, cli_env: dict[str, str], tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", {"bridge-defect-vit/config.pbtxt": 100, "bridge-defect-vit/1/model.onnx": 4096})
    for version in ("1.1.0", "1.2.0"):
        publish(registry, model, name="bridge-defect-vit", version=version, journal_dir=tmp_path / "j")
    promote(registry, "bridge-defect-vit", "1.1.0", "canary")

    parsed, _ = site_from_file(STACKS / "Pulumi.site-bridge-south.yaml")  # tier=canary
    resolved = resolve(parsed.stack, parsed.site, parse_policy(_following_policy()))
    assert resolved.profile.model.channel == "canary" and resolved.profile.model.version is None
    assert resolved.sources["model.channel"] == "profile:canary" and "model.version" not in resolved.sources

    pinned = pin_channel(resolved, registry_resolver(cli_env))
    assert (pinned.profile.model.version, pinned.channel) == ("1.1.0", "canary")
    assert pinned.explain()["modelChannel"] == {"channel": "canary", "resolvesTo": "1.1.0"}

    promote(registry, "bridge-defect-vit", "1.2.0", "canary")
    assert pin_channel(resolved, registry_resolver(cli_env)).profile.model.version == "1.2.0"


def test_unresolvable_channel_is_a_config_problem(registry: Store, cli_env: dict[str, str]) -> None:
    parsed, _ = site_from_file(STACKS / "Pulumi.site-bridge-south.yaml")
    resolved = resolve(parsed.stack, parsed.site, parse_policy(_following_policy()))
    with pytest.raises(ConfigError) as info:
        pin_channel(resolved, registry_resolver(cli_env))
    (problem,) = info.value.problems
    assert problem.path == "model.channel (from profile:canary)"
    assert "follows channel 'canary' of bridge-defect-vit, which cannot be resolved" in problem.message
    with pytest.raises(ConfigError, match="EDGEFM_REGISTRY_BUCKET"):
        pin_channel(resolved, registry_resolver({}))


def test_pinned_sites_need_no_registry() -> None:
    _, resolved = site_from_file(STACKS / "Pulumi.site-bridge-north.yaml")
    assert pin_channel(resolved, registry_resolver({})) is resolved
    assert load_policy(PLACEMENT)  # the shipped policy pins versions: demo and tests stay offline


def test_explain_shows_what_the_channel_resolves_to(registry: Store, cli_env: dict[str, str], tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", {"bridge-defect-vit/config.pbtxt": 100})
    publish(registry, model, name="bridge-defect-vit", version="1.3.0", journal_dir=tmp_path / "j")
    promote(registry, "bridge-defect-vit", "1.3.0", "canary")
    project = tmp_path / "project"
    shutil.copytree(ROOT / "stacks", project / "stacks")
    (project / "policies").mkdir()
    (project / "policies" / "placement.yaml").write_text(yaml.safe_dump(_following_policy()))
    result = subprocess.run(
        [sys.executable, "-m", "edgefm", "explain", "site-bridge-south", "--json"],
        cwd=project,
        env={**cli_env, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["modelChannel"] == {"channel": "canary", "resolvesTo": "1.3.0"}
    assert data["profile"]["model"] == {"name": "bridge-defect-vit", "version": "1.3.0", "channel": None}
