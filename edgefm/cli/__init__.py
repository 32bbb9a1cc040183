"""The `edgefm` command line: fleet config checks, placement explanations and model registry tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from edgefm.cli.access import hub_app, site_app
from edgefm.cli.console import err, out
from edgefm.cli.fleet import fleet_app
from edgefm.cli.lab import lab_app
from edgefm.cli.models import models_app
from edgefm.cli.portal import portal_app
from edgefm.cli.worker import db_app, worker
from edgefm.model.placement import PLACEMENT_FILE, PlacementPolicy, load_policy
from edgefm.model.problems import ConfigError, summary
from edgefm.model.stacks import (
    HUB_STACK,
    STACKS_DIR,
    check_fleet,
    check_stack_name,
    parse_hub,
    read_stack_file,
    resolve_site_file,
    stack_file,
)
from edgefm.model.stacks import stack_files as files_in
from edgefm.ops.affected import MAX_MATRIX_JOBS, GitError, affected_stacks, batches
from edgefm.ops.engine import config_passphrase
from edgefm.program.pin import pin_channel, registry_resolver

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False)
app.add_typer(models_app, name="models")
app.add_typer(fleet_app, name="fleet")
app.add_typer(portal_app, name="portal")
app.add_typer(db_app, name="db")
app.command("worker")(worker)
app.add_typer(lab_app, name="lab")
app.add_typer(hub_app, name="hub")
app.add_typer(site_app, name="site")

PlacementOpt = Annotated[Path, typer.Option("--placement", help="Placement policy file.")]
StacksOpt = Annotated[Path, typer.Option("--stacks-dir", help="Directory of Pulumi.<stack>.yaml files.")]


@app.callback()
def _root() -> None:
    """edgefm fleet tooling."""


def _policy_or_exit(path: Path) -> PlacementPolicy:
    try:
        return load_policy(path)
    except ConfigError as exc:
        for line in summary(exc.problems):
            err.print(line, markup=False)
        raise typer.Exit(1) from None


@app.command()
def validate(
    stack_files: Annotated[
        list[Path] | None, typer.Argument(help="Stack files; all of --stacks-dir when none.")
    ] = None,
    placement: PlacementOpt = Path(PLACEMENT_FILE),
    stacks_dir: StacksOpt = Path(STACKS_DIR),
) -> None:
    """Check stack files and the placement policy; print every problem, exit 1 if there is any."""
    policy = _policy_or_exit(placement)
    paths = list(stack_files or files_in(stacks_dir))
    if not paths:
        err.print(f"no stack files found in {stacks_dir}")
        raise typer.Exit(1)
    # Validation reads files as written: every encrypted value is decrypted with the passphrase the engine
    # would use, and render mode from the environment must not hide a missing credential.
    report = check_fleet(paths, policy, env={}, passphrase=config_passphrase())
    for line in summary(report.problems):
        err.print(line, markup=False)
    if report.problems:
        err.print(f"{len(report.problems)} problem(s) in {len(paths)} stack file(s)")
        raise typer.Exit(1)
    hub = " (hub + " if report.hub else " ("
    shards = f"{len(report.access)} access shard(s) + " if report.access else ""
    out.print(f"ok: {len(paths)} stack file(s){hub}{shards}{len(report.sites)} site(s)) valid against {placement}")


@app.command()
def explain(
    stack: Annotated[str, typer.Argument(help="Stack name, e.g. site-bridge-north or hub.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the resolution as JSON.")] = False,
    placement: PlacementOpt = Path(PLACEMENT_FILE),
    stacks_dir: StacksOpt = Path(STACKS_DIR),
) -> None:
    """Show what a stack resolves to: matched placement rules, components, versions and sizing."""
    policy = _policy_or_exit(placement)
    try:
        check_stack_name(stack)
        path = stack_file(stacks_dir, stack)
        if stack == HUB_STACK:
            hub = parse_hub(stack, read_stack_file(path), env={})
            data: dict[str, Any] = {
                "stack": stack,
                "hub": hub.hub.model_dump(mode="json", by_alias=True),
                "versions": policy.hub.model_dump(mode="json", by_alias=True),
            }
            _print(data, as_json)
            return
        resolved = pin_channel(resolve_site_file(path, policy, env={}), registry_resolver())
    except ConfigError as exc:
        for line in summary(exc.problems):
            err.print(line, markup=False)
        raise typer.Exit(1) from None
    data = resolved.explain()
    _print(data, as_json)


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print(json.dumps(data, indent=2, sort_keys=True), markup=False)
        return
    out.print(f"[bold]{data['stack']}[/bold]")
    if "profile" not in data:
        out.print(json.dumps(data, indent=2, sort_keys=True), markup=False)
        return
    site = data["site"]
    out.print(
        f"region {site['region']}, jurisdiction {site['jurisdiction']}, "
        f"{len(site['nodes'])} nodes, {data['gpuTotal']} GPUs, "
        f"cluster {site['cluster']['mode']}/{site['cluster']['distribution']}"
    )
    out.print(f"labels: {', '.join(f'{k}={v}' for k, v in sorted(site['labels'].items())) or '-'}")
    out.print(f"matched profiles (in precedence order): {', '.join(data['matchedProfiles'])}")
    out.print(f"components: {', '.join(data['components'])}")
    table = Table("setting", "value", "from", box=None, pad_edge=False)
    table.columns[1].overflow = "fold"
    for key, source in data["sources"].items():
        value: Any = data["profile"]
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        table.add_row(key, json.dumps(value) if not isinstance(value, str) else value, source)
    out.print(table)


@app.command()
def affected(
    base: Annotated[str, typer.Option("--base", help="Revision to compare with (e.g. the PR's base SHA).")],
    head: Annotated[
        str | None, typer.Option("--head", help="Revision with the change; default: the working tree.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array (for a CI matrix).")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Say on stderr why each stack is affected.")] = False,
    batch_jobs: Annotated[
        int | None,
        typer.Option(
            "--batches",
            min=1,
            max=MAX_MATRIX_JOBS,
            help="Print a JSON array of at most N batches, {batch, stacks}, for a CI matrix (implies --json).",
        ),
    ] = None,
    repo: Annotated[Path, typer.Option("--repo", help="Repository root.")] = Path("."),
) -> None:
    """List the stacks a change affects, one per line (or --json, or --batches N)."""
    try:
        result = affected_stacks(repo, base, head)
    except GitError as exc:
        typer.echo(f"edgefm affected: {exc}", err=True)
        raise typer.Exit(2) from None
    if batch_jobs is not None:
        if explain:
            for stack in result.stacks:
                typer.echo(f"{stack}: {'; '.join(result.reasons[stack])}", err=True)
        groups = batches(result.stacks, batch_jobs)
        width = len(str(len(groups)))
        typer.echo(json.dumps([{"batch": f"{i + 1:0{width}d}", "stacks": " ".join(g)} for i, g in enumerate(groups)]))
        return
    if explain:
        for stack in result.stacks:
            typer.echo(f"{stack}: {'; '.join(result.reasons[stack])}", err=True)
    if as_json:
        typer.echo(json.dumps(result.stacks))
    else:
        for stack in result.stacks:
            typer.echo(stack)


def main() -> None:
    app()
