"""Engine tests run the real Pulumi engine; the session fixture bootstraps it (fast when warm)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from edgefm.ops.engine import Manifest
from edgefm.ops.lab.runtime import Lab, LabError
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
    """The fleet lab for the project copy: a control plane per stack, started once and stopped (by pid) after."""
    lab = Lab(lab_project, lab_project.parent / "lab")
    try:
        lab.up()
    except LabError as exc:
        lab.down(purge=True)
        pytest.fail(f"edgefm lab up failed: {exc}", pytrace=False)
    yield lab
    stopped = lab.down(purge=True)
    assert all(stopped.values()), stopped
