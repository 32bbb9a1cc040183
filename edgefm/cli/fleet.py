"""`edgefm fleet ...`: preview, update and destroy stacks on the engine `make tools` provides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pulumi import automation as auto
from rich.table import Table

from edgefm.cli.console import err, out
from edgefm.model.stacks import HUB_STACK, access_stack_names
from edgefm.ops.fleet import Fleet, PolicyViolation, StackRun
from edgefm.ops.guardrails import GUARDRAILS

fleet_app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
# Wide enough for the summary table when output goes to a log rather than a terminal.
TABLE_WIDTH = 130

Stacks = Annotated[list[str] | None, typer.Argument(help="Stacks (default: the hub, then every site).")]
RenderRoot = Annotated[
    Path | None,
    typer.Option("--render-root", help="Render manifests under DIR/<stack> instead of applying them."),
]
Root = Annotated[Path, typer.Option("--root", help="The edgefm checkout.")]
OPS = ("create", "update", "replace", "delete", "same")


def _fleet(root: Path, render_root: Path | None) -> Fleet:
    from edgefm.ops.engine import EngineNotReady, require_manifest, workspace_options

    try:
        manifest = require_manifest()
        # Where the engine cannot start the Python pack, the fleet's own evaluation of it still gates every plan.
        packs = [root / GUARDRAILS] if manifest.runs_python_policy_packs else []
        return Fleet(root, workspace_options, render_root=render_root, policy_packs=packs)
    except EngineNotReady as exc:
        err.print(str(exc))
        raise typer.Exit(2) from None


def engine_errors(text: str) -> str:
    """The engine's `error:` lines, once each (its full output is mostly the stack's outputs)."""
    seen: dict[str, None] = {}
    for line in text.splitlines():
        if "error:" in line:
            seen.setdefault("  " + line.strip().split("error:", 1)[1].strip(), None)
    return "\n".join(seen) or text.strip()[-2000:]


def _table(title: str, runs: list[StackRun]) -> Table:
    columns = ["stack", "operation", *OPS, "seconds", "manifests written", "advisories"]
    table = Table(*columns, title=title, box=None, title_justify="left")
    for run in runs:
        counts = [str(run.changes.get(op, 0)) for op in OPS]
        table.add_row(
            run.stack, run.operation, *counts, f"{run.seconds:.1f}", str(run.manifests), str(len(run.advisories))
        )
    return table


def _each(operation: str, stacks: list[str] | None, root: Path, render_root: Path | None) -> None:
    fleet = _fleet(root, render_root)
    names = stacks or fleet.stacks()
    runs: list[StackRun] = []
    failed = False
    for name in names:
        out.print(f"{operation} {name} …")
        try:
            if operation == "preview":
                runs.append(fleet.preview(name))
            elif operation == "up":
                runs.append(fleet.up(name))
            else:
                runs.append(fleet.destroy(name))
        except PolicyViolation as exc:
            err.print(str(exc), markup=False)
            failed = True
        except auto.CommandError as exc:
            err.print(f"{name}: the engine failed:\n{engine_errors(str(exc))}", markup=False)
            failed = True
        for advisory in runs[-1].advisories if runs and runs[-1].stack == name else []:
            out.print(f"  advisory: {advisory}", markup=False)
    out.print(_table(f"edgefm fleet {operation}", runs), width=TABLE_WIDTH)
    if failed:
        raise typer.Exit(1)


@fleet_app.command()
def preview(stacks: Stacks = None, render_root: RenderRoot = None, root: Root = Path(".")) -> None:
    """Preview each stack and judge the plan with the guardrails."""
    _each("preview", stacks, root, render_root)


@fleet_app.command()
def up(stacks: Stacks = None, render_root: RenderRoot = None, root: Root = Path(".")) -> None:
    """Preview (guardrails) then update each stack, the hub first."""
    _each("up", stacks, root, render_root)


@fleet_app.command()
def rollout(
    stacks: Stacks = None,
    wave_label: Annotated[str, typer.Option("--wave-label", help="Site label that orders the waves.")] = "wave",
    max_failures: Annotated[int, typer.Option("--max-failures", min=0, help="Failed sites tolerated.")] = 0,
    render_root: RenderRoot = None,
    root: Root = Path("."),
) -> None:
    """Roll changes out in waves: the hub first, then each wave of sites previewed whole, then updated;
    later waves are held once failures exceed --max-failures. Pair with `edgefm affected` for the stacks."""
    from edgefm.ops.rollout import Wave, site_labels, waves_of
    from edgefm.ops.rollout import rollout as run_waves

    fleet = _fleet(root, render_root)
    names = stacks or fleet.stacks()
    waves = waves_of(site_labels(root, names), wave_label)
    # The hub side first: the hub, then the access shards (sites read both).
    shards = access_stack_names(names)
    if shards:
        waves.insert(0, Wave("access shards", shards))
    if HUB_STACK in names:
        waves.insert(0, Wave(HUB_STACK, [HUB_STACK]))
    for wave in waves:
        out.print(f"wave {wave.label}: {', '.join(wave.stacks)}")
    report = run_waves(fleet, waves, max_failures)
    for stack, reason in report.failures.items():
        err.print(f"{stack}: {reason}", markup=False)
    out.print(_table("edgefm fleet rollout", report.runs), width=TABLE_WIDTH)
    if report.held:
        held = "; ".join(f"wave {w.label}: " + ", ".join(w.stacks) for w in report.held)
        err.print(f"held (not started): {held}")
    if not report.ok:
        raise typer.Exit(1)


@fleet_app.command()
def destroy(
    stacks: Annotated[list[str], typer.Argument(help="Stacks to destroy.")],
    render_root: RenderRoot = None,
    root: Root = Path("."),
) -> None:
    """Destroy stacks, keeping protected resources (a site's datasets bucket)."""
    _each("destroy", stacks, root, render_root)
