"""`edgefm fleet ...`: preview, update, destroy, check drift and roll out stacks on the engine `make tools`
provides; every command runs stacks concurrently, each operation in its own process and workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgefm.cli.console import err, out
from edgefm.cli.rollout import rollout_app
from edgefm.model.stacks import HUB_STACK, access_stack_names, fleet_stack_names
from edgefm.ops.controller import SiteOutcome, SiteTask
from edgefm.ops.local import LocalExecutor, run_all
from edgefm.ops.siteops import SiteContext

fleet_app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
fleet_app.add_typer(rollout_app, name="rollout")
# Wide enough for the summary table when output goes to a log rather than a terminal.
TABLE_WIDTH = 130

Stacks = Annotated[list[str] | None, typer.Argument(help="Stacks (default: the hub, then every site).")]
RenderRoot = Annotated[
    Path | None,
    typer.Option("--render-root", help="Render manifests under DIR/<stack> instead of applying them."),
]
Root = Annotated[Path, typer.Option("--root", help="The edgefm checkout.")]
Lab = Annotated[
    bool, typer.Option("--lab", help="Apply to the fleet lab's clusters (`edgefm lab up`) instead of the sites'.")
]
OPS = ("create", "update", "replace", "delete", "same")


Parallel = Annotated[
    int | None, typer.Option("--parallel", "-j", min=1, help="Stacks run at once (default: the number of cores).")
]


def _context(root: Path, render_root: Path | None, lab: bool) -> SiteContext:
    from edgefm.ops.engine import EngineNotReady, require_manifest
    from edgefm.ops.lab.runtime import default_lab_dir

    if lab and render_root is not None:
        err.print("--lab and --render-root exclude each other: a run applies to the lab or renders manifests")
        raise typer.Exit(2)

    try:
        require_manifest()
    except EngineNotReady as exc:
        err.print(str(exc))
        raise typer.Exit(2) from None
    return SiteContext(
        repo=root.resolve(),
        render_root=render_root.resolve() if render_root else None,
        lab_dir=default_lab_dir(root.resolve()) if lab else None,
    )


def _row(task: SiteTask, outcome: SiteOutcome) -> list[str]:
    seconds = sum(s or 0.0 for s in (outcome.preview_seconds, outcome.update_seconds, outcome.health_seconds))
    counts = [str(outcome.changes.get(op, 0)) for op in OPS]
    verdict = "ok" if outcome.ok else f"failed at {outcome.phase}"
    advisories, pending = str(len(outcome.advisories)), str(len(outcome.unschedulable))
    return [task.stack, task.operation, *counts, f"{seconds:.1f}", advisories, pending, verdict]


def _report(title: str, results: list[tuple[SiteTask, SiteOutcome]]) -> None:
    table = Table(
        "stack",
        "operation",
        *OPS,
        "seconds",
        "advisories",
        "unschedulable",
        "result",
        title=title,
        box=None,
        title_justify="left",
    )
    for task, outcome in sorted(results, key=lambda r: r[0].stack):
        table.add_row(*_row(task, outcome))
    out.print(table, width=TABLE_WIDTH)


def _parallel(
    operation: str,
    stacks: list[str] | None,
    root: Path,
    render_root: Path | None,
    parallel: int | None,
    lab: bool = False,
) -> list[tuple[SiteTask, SiteOutcome]]:
    """Runs `operation` on every stack, `parallel` at a time; the hub goes first, alone, when it is updated
    (sites read its outputs). Each result is printed as it arrives."""
    ctx = _context(root, render_root, lab)
    names = stacks or fleet_stack_names(ctx.repo)
    unknown = sorted(set(names) - set(fleet_stack_names(ctx.repo)))
    if unknown:
        err.print(f"no such stack(s) in {ctx.repo / 'stacks'}: {', '.join(unknown)}")
        raise typer.Exit(2)
    batches = [names]
    if operation in ("update", "reconcile"):
        # The hub side first, each step done before the next starts: the hub, then its access shards (sites read
        # both), then the sites.
        hub = [n for n in names if n == HUB_STACK]
        shards = access_stack_names(names)
        sites = [n for n in names if n not in hub and n not in shards]
        batches = [b for b in (hub, shards, sites) if b]
    results: list[tuple[SiteTask, SiteOutcome]] = []
    with LocalExecutor(ctx, parallel) as executor:
        out.print(f"{operation}: {len(names)} stack(s), {executor.parallel} at a time")
        for batch in batches:
            tasks = [SiteTask("cli", f"cli:{name}", name, operation, "cli") for name in batch]
            for task, outcome in run_all(executor, tasks):
                results.append((task, outcome))
                mark = "ok" if outcome.ok else f"FAILED at {outcome.phase}: {outcome.error}"
                out.print(f"  {task.stack}: {mark}", markup=False)
                for advisory in outcome.advisories:
                    out.print(f"    advisory: {advisory}", markup=False)
                for pod in outcome.unschedulable:
                    err.print(f"    stays Pending, no node can run it: {pod}", markup=False)
            if any(not o.ok for _, o in results) and batch is not batches[-1]:
                err.print("the hub side failed: the stacks after it were not started")
                break
    return results


def _finish(title: str, results: list[tuple[SiteTask, SiteOutcome]]) -> None:
    _report(title, results)
    if not all(o.ok for _, o in results):
        raise typer.Exit(1)


@fleet_app.command()
def preview(
    stacks: Stacks = None,
    render_root: RenderRoot = None,
    lab: Lab = False,
    root: Root = Path("."),
    parallel: Parallel = None,
) -> None:
    """Preview each stack and judge the plan with the guardrails."""
    _finish("edgefm fleet preview", _parallel("preview", stacks, root, render_root, parallel, lab))


@fleet_app.command()
def up(
    stacks: Stacks = None,
    render_root: RenderRoot = None,
    lab: Lab = False,
    root: Root = Path("."),
    parallel: Parallel = None,
) -> None:
    """Preview (guardrails) then update each stack, the hub first."""
    _finish("edgefm fleet up", _parallel("update", stacks, root, render_root, parallel, lab))


@fleet_app.command()
def destroy(
    stacks: Annotated[list[str], typer.Argument(help="Stacks to destroy.")],
    render_root: RenderRoot = None,
    lab: Lab = False,
    root: Root = Path("."),
    parallel: Parallel = None,
) -> None:
    """Destroy stacks, keeping protected resources (a site's datasets bucket)."""
    _finish("edgefm fleet destroy", _parallel("destroy", stacks, root, render_root, parallel, lab))


@fleet_app.command()
def drift(
    stacks: Stacks = None,
    render_root: RenderRoot = None,
    lab: Lab = False,
    root: Root = Path("."),
    parallel: Parallel = None,
) -> None:
    """Report drift: a refresh in preview-only mode for each stack, nothing changed. Per site, the drifted
    resources and their changed properties. Exit code: 0 nothing drifted, 1 drift found, 2 a stack could not
    be checked."""
    results = _parallel("drift", stacks, root, render_root, parallel, lab)
    drifted = 0
    for task, outcome in sorted(results, key=lambda r: r[0].stack):
        if not outcome.ok:
            err.print(f"{task.stack}: could not check: {outcome.error}", markup=False)
        elif outcome.drift:
            drifted += 1
            out.print(f"{task.stack}: {len(outcome.drift)} resource(s) drifted", markup=False)
            for entry in outcome.drift:
                keys = ", ".join(entry["keys"]) or (
                    "gone from the cluster" if entry["op"] == "delete" else "(whole resource)"
                )
                out.print(
                    f"  {entry['op']:<8} {entry['urn'].rsplit('::', 1)[-1]} ({entry['type']}): {keys}", markup=False
                )
        else:
            out.print(f"{task.stack}: no drift", markup=False)
    if any(not o.ok for _, o in results):
        raise typer.Exit(2)
    if drifted:
        raise typer.Exit(1)


@fleet_app.command()
def reconcile(
    stacks: Stacks = None,
    render_root: RenderRoot = None,
    lab: Lab = False,
    root: Root = Path("."),
    parallel: Parallel = None,
) -> None:
    """Put drifted stacks back: an update with refresh (what the cluster has is read first, then corrected)."""
    _finish("edgefm fleet reconcile", _parallel("reconcile", stacks, root, render_root, parallel, lab))
