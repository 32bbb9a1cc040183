"""`edgefm hub shards` and `edgefm site keygen`: the hub's access shards and a site's sealing key pair."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgefm.cli.console import err, out
from edgefm.model.problems import ConfigError
from edgefm.model.stacks import STACKS_DIR, access_stack_files, access_stack_of, site_stack_files
from edgefm.ops.access import keygen as make_keys
from edgefm.ops.access import write_access_shards

hub_app = typer.Typer(no_args_is_help=True, add_completion=False, help="The hub's access shards.")
site_app = typer.Typer(no_args_is_help=True, add_completion=False, help="A site's sealing key pair.")
Root = Annotated[Path, typer.Option("--root", help="The edgefm checkout.")]


def _problems(exc: ConfigError) -> typer.Exit:
    for problem in exc.problems:
        err.print(str(problem), markup=False)
    return typer.Exit(1)


@hub_app.command()
def shards(
    count: Annotated[int, typer.Option("--count", help="How many access shards (sites are hashed over them).")],
    root: Root = Path("."),
) -> None:
    """Write stacks/Pulumi.hub-access-NNN.yaml for COUNT shards from the hub's stack file."""
    try:
        change = write_access_shards(root / STACKS_DIR, count)
    except ConfigError as exc:
        raise _problems(exc) from None
    out.print(f"{len(change.written)} access shard file(s) written; removed: {', '.join(change.removed) or 'none'}")
    if change.moved:
        err.print(
            f"{len(change.moved)} site(s) change shard: update the new shards before destroying the removed or old "
            "ones, so every site keeps its access"
        )
    sites = site_stack_files(root / STACKS_DIR)
    if sites:
        per = len(sites) / count
        out.print(f"{len(sites)} site(s), {per:.1f} per shard on average")


@site_app.command()
def keygen(
    stacks: Annotated[list[str], typer.Argument(help="Site stacks, e.g. site-bridge-north.")],
    rotate: Annotated[bool, typer.Option("--rotate", help="Replace an existing key pair.")] = False,
    root: Root = Path("."),
) -> None:
    """Give each site stack a key pair: public key in its stack file, private key a secret of its stack."""
    from edgefm.ops.engine import EngineNotReady, workspace_options

    failed = False
    for stack in stacks:
        try:
            make_keys(root, stack, workspace_options, rotate=rotate)
        except ConfigError as exc:
            _problems(exc)
            failed = True
            continue
        except EngineNotReady as exc:
            err.print(str(exc), markup=False)
            raise typer.Exit(2) from None
        shards = len(access_stack_files(root / STACKS_DIR))
        where = f"; update {access_stack_of(stack, shards)} to seal its credential" if shards else ""
        out.print(f"{stack}: key pair set{where}")
    if failed:
        raise typer.Exit(1)
