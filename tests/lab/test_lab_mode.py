"""Lab mode of the program: with EDGEFM_LAB_DIR set, each stack's cluster is the lab's (its kubeconfig, no SSH
bootstrap) and everything else is what a real site gets; the stack files are not touched."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest

from edgefm.model.problems import ConfigError
from edgefm.model.stacks import LAB_DIR_ENV, RENDER_ROOT_ENV, lab_kubeconfig_path
from tests.harness import STACKS, Run, run_program, site_from_file, unwrap

SITE = "site-bridge-north"
LAB_KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: [{name: lab, cluster: {server: https://127.0.0.1:1}}]\n"


def _run(env: dict[str, str]) -> Run:
    from edgefm.program import build_site

    parsed, resolved = site_from_file(STACKS / f"Pulumi.{SITE}.yaml", env)

    def program() -> None:
        build_site(
            parsed,
            resolved,
            pulumi.StackReference("organization/edgefm/hub"),
            pulumi.StackReference("organization/edgefm/hub-access-000"),
        )

    return run_program(program, parsed.stack)


def _lab(tmp_path: Path) -> dict[str, str]:
    path = lab_kubeconfig_path(tmp_path, SITE)
    path.parent.mkdir(parents=True)
    path.write_text(LAB_KUBECONFIG)
    return {LAB_DIR_ENV: str(tmp_path)}


def test_lab_mode_uses_the_labs_cluster_instead_of_the_ssh_bootstrap(tmp_path: Path) -> None:
    real = _run({})
    lab = _run(_lab(tmp_path))
    # The real site bootstraps k3s over SSH; the lab site does not, and its provider talks to the lab.
    assert real.of_type("command:remote:Command")
    assert not lab.of_type("command:remote:Command")
    provider = lab.one("pulumi:providers:kubernetes")
    assert unwrap(provider.inputs["kubeconfig"]) == LAB_KUBECONFIG
    assert "renderYamlToDirectory" not in provider.inputs
    # Everything on the cluster is the same: the same objects, kinds and names.
    assert sorted((r.type, r.name) for r in lab.k8s_objects()) == sorted((r.type, r.name) for r in real.k8s_objects())


def test_lab_mode_without_a_lab_cluster_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        site_from_file(STACKS / f"Pulumi.{SITE}.yaml", {LAB_DIR_ENV: str(tmp_path)})
    assert "edgefm lab up" in str(caught.value.problems[0])


def test_lab_and_render_mode_exclude_each_other(tmp_path: Path) -> None:
    env = {**_lab(tmp_path), RENDER_ROOT_ENV: str(tmp_path / "out")}
    with pytest.raises(ConfigError) as caught:
        site_from_file(STACKS / f"Pulumi.{SITE}.yaml", env)
    assert "are both set" in str(caught.value.problems[0])
