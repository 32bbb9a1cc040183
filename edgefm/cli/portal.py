"""`edgefm portal`: the fleet in a browser, on 127.0.0.1 by default (see docs/portal.md)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from edgefm.cli.console import err, out
from edgefm.model.problems import ConfigError
from edgefm.portal.contracts import SiteStatus

portal_app = typer.Typer(add_completion=False, help=__doc__, invoke_without_command=True)


@portal_app.callback()
def portal(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8080,
    repo: Annotated[Path, typer.Option("--repo", help="The edgefm checkout the portal shows and changes.")] = Path("."),
    users: Annotated[
        Path | None, typer.Option("--users", help="Local users file (argon2 hashes); default: portal/users.demo.yaml.")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help="The fleet service's database (journal and queue); default $EDGEFM_DATABASE_URL, else the "
            "embedded PostgreSQL.",
        ),
    ] = None,
    lab: Annotated[
        bool,
        typer.Option(
            "--lab/--no-lab",
            help="Read each site's health from its fleet-lab cluster; jobs run against the lab once it exists.",
        ),
    ] = True,
) -> None:
    """Serve the portal over the checkout and the fleet service."""
    if ctx.invoked_subcommand is not None:
        return
    from edgefm.portal.fleetview import FleetView
    from edgefm.portal.server import ServiceUnavailable, build, fleet_service, serve
    from edgefm.portal.settings import PortalSettings
    from edgefm.portal.watch import PolledStatus, Probe, lab_probe

    root = repo.resolve()
    try:
        settings = PortalSettings.from_env(root, users_file=users or root / "portal" / "users.demo.yaml")
        probe: Probe = _unknown_health
        lab_dir: Path | None = None
        if lab:
            try:
                probe = lab_probe(root)
                from edgefm.ops.lab.runtime import default_lab_dir

                # Jobs (previews, drift checks, change previews) run against the lab's clusters once it exists.
                lab_dir = default_lab_dir(root) if default_lab_dir(root).is_dir() else None
            except ModuleNotFoundError:
                err.print("edgefm portal: the fleet lab (edgefm.ops.lab) is not in this checkout; health shows unknown")
        service = fleet_service(database, root, lab_dir=lab_dir)
        # Health from each site's cluster, off the request path (drift: the journal's drift checks).
        view = FleetView(root)
        status = PolledStatus(lambda: sorted(view.sites()), probe).start()
        app = build(settings, service, status)
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False)
        raise typer.Exit(1) from None
    except ServiceUnavailable as exc:
        err.print(f"edgefm portal: {exc}", markup=False)
        raise typer.Exit(2) from None
    if host not in ("127.0.0.1", "::1", "localhost") and not settings.secure_cookies:
        err.print("edgefm portal: listening beyond loopback without EDGEFM_PORTAL_SECURE_COOKIES=1 (TLS in front)")
    out.print(f"edgefm portal on http://{host}:{port}/ over {root}")
    serve(app, host, port)


def _unknown_health(stack: str) -> SiteStatus:
    """Without a cluster to ask, a site's health is unknown (and the pages say so)."""
    return SiteStatus()


@portal_app.command("hash-password")
def hash_password() -> None:
    """Print an argon2 hash for a local users file (the password is read without echo)."""
    from edgefm.portal.access import hash_password as make_hash

    password = getpass.getpass("password: ")
    if len(password) < 12:
        err.print("edgefm portal hash-password: use at least 12 characters")
        raise typer.Exit(1)
    if password != getpass.getpass("again: "):
        err.print("edgefm portal hash-password: the two passwords differ")
        raise typer.Exit(1)
    out.print(make_hash(password), markup=False)
