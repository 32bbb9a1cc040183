"""`edgefm fleet preview` of a 16-site fleet against a sequential `pulumi preview --stack` loop, side by side.

Both preview the same 16 sites (the four sample sites, each four times under its own name) of a copy of this
checkout, on the engine `make tools` provides, in render mode (no cluster needed), against a file backend where
the hub is up. The loop is what a user would run instead: `pulumi preview --stack S` per site at its defaults.
`edgefm fleet preview` runs at its defaults too: as many stacks at once as there are cores, each in its own
process and workspace, and it judges every plan with the guardrails, which the loop does not.

    python bench/fleet_preview.py [--reps 2] [--copies 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgefm.model.stacks import RENDER_ROOT_ENV, access_stack_names, stacks_in
from edgefm.ops.engine import engine_env, require_manifest

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["Pulumi.yaml", "__main__.py", "edgefm", "components", "policies", "stacks", "pyproject.toml"]
SITES = ["bridge-north", "bridge-south", "harbor-ocp", "viaduct-cpu"]


def make_project(tmp: Path, copies: int) -> tuple[Path, list[str]]:
    project = tmp / "project"
    project.mkdir()
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, project / name)
    (project / ".venv").symlink_to(ROOT / ".venv")
    stacks = []
    for site in SITES:
        text = (project / "stacks" / f"Pulumi.site-{site}.yaml").read_text()
        for k in range(1, copies):
            name = f"{site}-{k}"
            (project / "stacks" / f"Pulumi.site-{name}.yaml").write_text(
                text.replace(f"name: {site}\n", f"name: {name}\n")
            )
        stacks += [f"site-{site}"] + [f"site-{site}-{k}" for k in range(1, copies)]
    return project, sorted(stacks)


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} … failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--copies", type=int, default=4, help="copies of each of the 4 sample sites")
    args = parser.parse_args()
    manifest = require_manifest()
    with tempfile.TemporaryDirectory(prefix="edgefm-bench-") as tmp_name:
        tmp = Path(tmp_name)
        project, stacks = make_project(tmp, args.copies)
        state = tmp / "state"
        state.mkdir()
        env = engine_env(manifest=manifest, repo=project, backend_url=state.as_uri())
        env[RENDER_ROOT_ENV] = str(tmp / "out")
        pulumi = str(manifest.pulumi)
        # The hub side the sites read: the hub and its access shards (which seal each site's credential).
        hub_side = ["hub", *access_stack_names(stacks_in(project))]
        for stack in [*hub_side, *stacks]:
            subprocess.run([pulumi, "stack", "init", stack], env=env, cwd=project, capture_output=True, check=False)
        for stack in hub_side:
            timed([pulumi, "up", "--yes", "--stack", stack], env, project)
        edgefm_env = {**env, "EDGEFM_BACKEND_URL": state.as_uri()}
        cores = len(os.sched_getaffinity(0))
        print(f"{len(stacks)} sites, render mode, {cores} cores; engine {manifest.pulumi}")
        loops, fleets = [], []
        for rep in range(args.reps):
            loop = sum(timed([pulumi, "preview", "--stack", s], env, project) for s in stacks)
            fleet = timed(
                [
                    sys.executable,
                    "-m",
                    "edgefm",
                    "fleet",
                    "preview",
                    *stacks,
                    "--root",
                    str(project),
                    "--render-root",
                    str(tmp / "out"),
                ],
                edgefm_env,
                project,
            )
            loops.append(loop)
            fleets.append(fleet)
            print(
                f"  rep {rep + 1}: pulumi preview loop {loop:6.1f} s   edgefm fleet preview {fleet:6.1f} s   "
                f"{loop / fleet:.2f}x"
            )
        loop, fleet = statistics.median(loops), statistics.median(fleets)
        print(
            f"median: loop {loop:.1f} s ({loop / len(stacks):.2f} s/site), edgefm {fleet:.1f} s "
            f"({fleet / len(stacks):.2f} s/site): {loop / fleet:.2f}x faster"
        )


if __name__ == "__main__":
    main()
