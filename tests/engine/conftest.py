"""Engine tests run the real Pulumi engine; the session fixture bootstraps it (fast when warm)."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pulumi import automation as auto
from rich.console import Console

from edgefm.ops.engine import Manifest, workspace_options
from edgefm.ops.fleet import Fleet, StackRun
from edgefm.ops.lab.runtime import Lab, LabError, default_lab_dir
from edgefm.ops.siteops import engine_errors
from tests.engine.labfleet import Applied, Env
from tests.harness import ROOT
from tools.engine.build import ensure_toolchain
from tools.gobuild import BuildError

PROJECT_FILES = ["Pulumi.yaml", "__main__.py", "edgefm", "components", "policies", "stacks"]


@pytest.fixture(scope="session")
def engine() -> Manifest:
    """The toolchain manifest; a missing toolchain is built, and a failed build fails the tests (no skip)."""
    try:
        return ensure_toolchain(console=Console(stderr=True, highlight=False))
    except BuildError as exc:
        pytest.fail(f"make tools failed at step {exc.step}: {exc.message}\n{exc.tail}", pytrace=False)


@pytest.fixture(scope="session")
def lab_tools() -> Path:
    """The lab's binaries, stages and CRDs (`make lab-tools`); built when missing, a failed build fails the tests."""
    from tools.lab.build import Progress, build, cache_dir, load_pins

    try:
        build(load_pins(), cache_dir(), Progress())
    except BuildError as exc:
        pytest.fail(f"make lab-tools failed at step {exc.step}: {exc.message}\n{exc.tail}", pytrace=False)
    return cache_dir()


@pytest.fixture(scope="session")
def lab_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project the lab tests may edit (placement, stack files) without touching the checkout."""
    project = tmp_path_factory.mktemp("lab") / "project"
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            project.mkdir(exist_ok=True)
            shutil.copy2(src, project / name)
    # Pulumi.yaml names the project's .venv; the engine starts dynamic providers from it.
    (project / ".venv").symlink_to(ROOT / ".venv")
    return project


@pytest.fixture(scope="session")
def fleet_lab(lab_tools: Path, lab_project: Path) -> Iterator[Lab]:
    """The fleet lab for the project copy: a control plane per stack, started once and stopped (by pid) after.
    Its directory is where `edgefm ... --lab --root <project copy>` looks for it."""
    lab = Lab(lab_project, default_lab_dir(lab_project))
    try:
        lab.up()
    except LabError as exc:
        lab.down(purge=True)
        pytest.fail(f"edgefm lab up failed: {exc}", pytrace=False)
    yield lab
    stopped = lab.down(purge=True)
    assert all(stopped.values()), stopped


@pytest.fixture(scope="session")
def env(engine: Manifest, fleet_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Env:
    """The project copy's fleet on the lab, on a file backend of its own (the CLI finds it through
    EDGEFM_BACKEND_URL, see Env.edgefm)."""
    backend = tmp_path_factory.mktemp("lab-backend")
    options = functools.partial(workspace_options, manifest=engine, backend_url=backend.as_uri())
    fleet = Fleet(fleet_lab.root, options, policy_packs=[], lab_dir=fleet_lab.dir)
    return Env(fleet_lab.root, backend, fleet_lab, fleet)


@pytest.fixture(scope="session")
def applied(env: Env) -> Applied:
    """The hub, then every sample stack, updated for real against its lab cluster, once per session: every lab
    module starts from it and leaves each stack as it found it (test_lab_fleet's last test destroys one site). A
    stack the cluster refuses is recorded (test_lab_fleet's first test fails on it) and the other tests go on with
    the stacks that were applied."""
    runs: dict[str, StackRun] = {}
    failed: dict[str, str] = {}
    for name in env.fleet.stacks():
        try:
            runs[name] = env.fleet.up(name)
        except auto.CommandError as exc:
            failed[name] = engine_errors(exc)
    env.refused.update(failed)
    return Applied(runs, failed)
