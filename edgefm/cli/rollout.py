"""`edgefm fleet rollout ...`: a change through the fleet, group by group, each site previewed once, judged by the
guardrails, updated and health-gated; journaled, so it can be paused, resumed (even after its process was killed),
approved and aborted.

The strategy: a YAML file (--strategy) and/or flags (flags win). Its fields:

canary (--canary STACK, repeat; required): the mandatory first group; nothing else starts before it has succeeded
and soaked. The hub, when it is rolled out, goes alone before it.

groupBy (--group-by LABEL, default wave): the site label whose values make the later groups; numbers in order,
then names, unlabelled last.

maxConcurrency (--max-concurrency N or P%, default 1): sites updated at once within a group; a percentage is of
the group's size (at least 1).

maxFailures (--max-failures N or P%, default 0): failed sites tolerated over the whole rollout (a percentage is
of all its sites); past it nothing new starts and the rollout fails.

minSuccessTime (--min-success-time SECONDS, default 0): soak after each group before the next one starts.

progressDeadline (--progress-deadline SECONDS, default 1800): time a site may take from its start until healthy.

approve (--approve GROUP, repeat; * for every group): groups that wait for `edgefm fleet rollout approve` by
someone other than the rollout's starter.

health.workloads (--no-health-workloads to skip, default on): the site's cluster reports every edgefm workload
healthy: Deployments available, DaemonSets ready, Jobs not failed, no pod Pending past health.pendingDeadline
(--pending-deadline SECONDS, default 300). Rendered sites have no cluster and skip it.

health.promql (--promql QUERY): a condition on the hub's telemetry that must return a non-empty result; {site}
is replaced by the site's name.

health.prometheusUrl (--prometheus-url URL): the hub's Prometheus, which health.promql is asked; needed with it.

health.interval (--health-interval SECONDS, default 5): how often the gate is polled until it holds.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from edgefm.cli.console import err, out
from edgefm.model.stacks import fleet_stack_names
from edgefm.ops.controller import Controller, lease_holder, start_rollout
from edgefm.ops.journal import FINAL, SUCCEEDED, Journal
from edgefm.ops.rollout import site_labels
from edgefm.ops.strategy import RolloutStrategy, StrategyError, load_strategy, parse_strategy, plan_groups


def _paragraphs(text: str) -> str:
    """The docstring's paragraphs, each on one line, so the help reflows them to the terminal's width."""
    return "\n\n".join(" ".join(p.split()) for p in text.strip().split("\n\n"))


rollout_app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=_paragraphs(__doc__ or ""), rich_markup_mode=None
)

Database = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="EDGEFM_DATABASE_URL",
        help="Journal database URL (default: sqlite file .state/journal.db in the checkout).",
    ),
]
Actor = Annotated[str, typer.Option("--actor", help="Who does this (default: the login name).")]
RolloutId = Annotated[str, typer.Argument(help="The rollout's id (printed when it started).")]
Root = Annotated[Path, typer.Option("--root", help="The edgefm checkout.")]
TABLE_WIDTH = 130


def _journal(database: str | None, root: Path) -> Journal:
    from edgefm.ops.database import normalise

    if database is None:
        state = root.resolve() / ".state"
        state.mkdir(parents=True, exist_ok=True)
        database = f"sqlite:///{state / 'journal.db'}"
    return Journal(normalise(database))


def _actor(actor: str | None) -> str:
    return actor or os.environ.get("EDGEFM_ACTOR") or getpass.getuser()


def _drive(journal: Journal, run_id: str, parallel: int | None) -> None:
    from edgefm.cli.fleet import _context
    from edgefm.ops.local import LocalExecutor

    run = journal.run(run_id)
    assert run is not None and run.strategy is not None
    ctx_raw: dict[str, Any] = run.context or {}
    base = _context(
        Path(ctx_raw.get("repo", ".")),
        Path(ctx_raw["render_root"]) if ctx_raw.get("render_root") else None,
        bool(ctx_raw.get("lab")),
    )
    strategy = RolloutStrategy.model_validate(run.strategy)
    largest = max((len(g.stacks) for g in journal.groups(run_id)), default=1)
    workers = parallel or min(strategy.concurrency(largest), os.cpu_count() or 1)
    with LocalExecutor(base, workers) as executor:
        state = Controller(journal, run_id, executor, on_event=lambda m: out.print(m, markup=False)).run()
    _summary(journal, run_id)
    if state != SUCCEEDED:
        run = journal.run(run_id)
        err.print(f"rollout {run_id} {state}: {run.message if run else ''}", markup=False)
        raise typer.Exit(1)


def _summary(journal: Journal, run_id: str) -> None:
    table = Table(
        "stack",
        "group",
        "operation",
        "attempt",
        "result",
        "phase",
        "preview s",
        "update s",
        "health s",
        "error",
        title=f"rollout {run_id}",
        box=None,
        title_justify="left",
    )
    for r in sorted(journal.site_runs(run_id=run_id), key=lambda r: (r.queued_at, r.stack)):
        table.add_row(
            r.stack,
            r.group_name or "",
            r.operation,
            str(r.attempt),
            r.state,
            r.phase,
            *(f"{s:.1f}" if s is not None else "" for s in (r.preview_seconds, r.update_seconds, r.health_seconds)),
            (r.error or "")[:60],
        )
    out.print(table, width=TABLE_WIDTH)


@rollout_app.command("start")
def start(
    stacks: Annotated[list[str] | None, typer.Argument(help="Stacks (default: the hub and every site).")] = None,
    strategy_file: Annotated[Path | None, typer.Option("--strategy", help="Strategy file (YAML).")] = None,
    canary: Annotated[list[str] | None, typer.Option("--canary", help="Canary stack (repeat).")] = None,
    group_by: Annotated[str | None, typer.Option("--group-by", help="Site label of the groups.")] = None,
    max_concurrency: Annotated[str | None, typer.Option("--max-concurrency", help="N or P%.")] = None,
    max_failures: Annotated[str | None, typer.Option("--max-failures", help="N or P%.")] = None,
    min_success_time: Annotated[float | None, typer.Option("--min-success-time", help="Soak seconds.")] = None,
    progress_deadline: Annotated[float | None, typer.Option("--progress-deadline", help="Seconds.")] = None,
    approve: Annotated[list[str] | None, typer.Option("--approve", help="Group needing approval (*: all).")] = None,
    no_health_workloads: Annotated[bool, typer.Option("--no-health-workloads")] = False,
    pending_deadline: Annotated[float | None, typer.Option("--pending-deadline", help="Seconds.")] = None,
    promql: Annotated[str | None, typer.Option("--promql", help="PromQL condition; {site} is the site.")] = None,
    prometheus_url: Annotated[str | None, typer.Option("--prometheus-url")] = None,
    health_interval: Annotated[float | None, typer.Option("--health-interval", help="Seconds.")] = None,
    render_root: Annotated[Path | None, typer.Option("--render-root", help="Render to DIR/<stack>.")] = None,
    lab: Annotated[bool, typer.Option("--lab", help="Apply to the fleet lab's clusters (`edgefm lab up`).")] = False,
    parallel: Annotated[int | None, typer.Option("--parallel", "-j", min=1, help="Worker processes.")] = None,
    on_workers: Annotated[
        bool,
        typer.Option(
            "--on-workers",
            help="Queue it for `edgefm worker`s (PostgreSQL; default: the embedded one) and follow its events here.",
        ),
    ] = False,
    database: Database = None,
    actor: Actor = "",
    root: Root = Path("."),
) -> None:
    """Start a rollout and drive it here until it ends (Ctrl-C stops driving; `resume` carries on), or queue it
    for the workers with --on-workers."""
    flags: dict[str, Any] = {
        "canary": canary or None,
        "groupBy": group_by,
        "maxConcurrency": max_concurrency,
        "maxFailures": max_failures,
        "minSuccessTime": min_success_time,
        "progressDeadline": progress_deadline,
        "approve": approve or None,
    }
    health = {
        "workloads": False if no_health_workloads else None,
        "pendingDeadline": pending_deadline,
        "promql": promql,
        "prometheusUrl": prometheus_url,
        "interval": health_interval,
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    health_overrides = {k: v for k, v in health.items() if v is not None}
    repo = root.resolve()
    names = stacks or fleet_stack_names(repo)
    try:
        if strategy_file is not None:
            base = load_strategy(strategy_file)
            raw = base.model_dump(by_alias=True)
            raw.update(overrides)
            raw["health"] = {**raw["health"], **health_overrides}
            raw["stacks"] = stacks or base.stacks or names
            strategy = parse_strategy(raw, str(strategy_file))
        else:
            strategy = parse_strategy({**overrides, "health": health_overrides, "stacks": names}, "flags")
        names = strategy.stacks
        unknown = sorted(set(names) - set(fleet_stack_names(repo)))
        if unknown:
            raise StrategyError(f"no such stack(s) in {repo / 'stacks'}: {', '.join(unknown)}")
        groups = plan_groups(strategy, names, site_labels(repo, names))
    except StrategyError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    if on_workers and lab:
        err.print("--lab drives the rollout here: the fleet lab runs on this machine, not on the workers'")
        raise typer.Exit(2)
    if on_workers:
        _on_workers(strategy, database, repo, render_root, _actor(actor))
        return
    journal = _journal(database, repo)
    context = {"repo": str(repo), "render_root": str(render_root.resolve()) if render_root else None, "lab": lab}
    run_id = start_rollout(journal, strategy, [(g.name, g.stacks) for g in groups], _actor(actor), context=context)
    out.print(f"rollout {run_id}: {len(names)} stack(s) in {len(groups)} group(s)")
    for group in groups:
        out.print(f"  {group.name}: {', '.join(group.stacks)}", markup=False)
    _drive(journal, run_id, parallel)


def _on_workers(
    strategy: RolloutStrategy, database: str | None, repo: Path, render_root: Path | None, actor: str
) -> None:
    import time

    from edgefm.ops.database import DatabaseError, database_url
    from edgefm.ops.service import FleetService

    try:
        url = database_url(database)
    except DatabaseError as exc:
        err.print(str(exc))
        raise typer.Exit(2) from None
    service = FleetService(url, repo, render_root=render_root.resolve() if render_root else None)
    rollout_id = service.start_rollout(strategy, actor)
    out.print(f"rollout {rollout_id} queued on {url.split('@')[-1]}; following its events (Ctrl-C stops following)")
    seq = 0
    while True:
        for event in service.events(rollout_id, seq):
            seq = event.seq
            out.print(f"{event.at:%H:%M:%S} {event.message}", markup=False)
        view = service.rollout(rollout_id)
        if view is not None and view.state in FINAL:
            if view.state != SUCCEEDED:
                raise typer.Exit(1)
            return
        time.sleep(1.0)


@rollout_app.command("resume")
def resume(
    rollout_id: RolloutId,
    parallel: Annotated[int | None, typer.Option("--parallel", "-j", min=1, help="Worker processes.")] = None,
    database: Database = None,
    actor: Actor = "",
    root: Root = Path("."),
) -> None:
    """Carry on with a paused rollout, or one whose process died: finished sites are not touched again, the
    failure budget counts what already failed, and a site that was mid-update is checked first."""
    journal = _journal(database, root)
    run = journal.run(rollout_id)
    if run is None or run.kind != "rollout":
        err.print(f"no rollout {rollout_id!r} in {journal.url}")
        raise typer.Exit(2)
    if run.state in FINAL:
        err.print(f"rollout {rollout_id} has ended ({run.state}): {run.message}", markup=False)
        raise typer.Exit(2)
    holder = lease_holder(journal, rollout_id)
    if holder is not None:
        err.print(f"rollout {rollout_id} is being driven by {holder}; `resume` there, or wait until it stops")
        raise typer.Exit(2)
    if run.desired != "running":
        journal.set_desired(rollout_id, "running", _actor(actor))
    journal.audit(_actor(actor), "rollout.resume", rollout_id, "ok")
    _drive(journal, rollout_id, parallel)


def _command(rollout_id: str, database: str | None, root: Path, actor: str, desired: str) -> None:
    journal = _journal(database, root)
    run = journal.run(rollout_id)
    if run is None or run.kind != "rollout":
        err.print(f"no rollout {rollout_id!r} in {journal.url}")
        raise typer.Exit(2)
    if run.state in FINAL:
        err.print(f"rollout {rollout_id} has ended ({run.state})")
        raise typer.Exit(2)
    journal.set_desired(rollout_id, desired, _actor(actor))
    journal.audit(_actor(actor), f"rollout.{desired}", rollout_id, "ok")
    out.print(f"rollout {rollout_id}: {desired} requested")


@rollout_app.command("pause")
def pause(rollout_id: RolloutId, database: Database = None, actor: Actor = "", root: Root = Path(".")) -> None:
    """No new site starts; running sites finish. `resume` carries on."""
    _command(rollout_id, database, root, actor, "paused")


@rollout_app.command("abort")
def abort(rollout_id: RolloutId, database: Database = None, actor: Actor = "", root: Root = Path(".")) -> None:
    """No new site starts; the rollout ends as aborted once running sites have finished."""
    _command(rollout_id, database, root, actor, "aborted")


@rollout_app.command("approve")
def approve_group(rollout_id: RolloutId, database: Database = None, actor: Actor = "", root: Root = Path(".")) -> None:
    """Approve the group that waits (never by the rollout's own starter, never a group approved already)."""
    from edgefm.ops.approval import approve

    journal = _journal(database, root)
    who = _actor(actor)
    try:
        group = approve(journal, rollout_id, who)
    except LookupError:
        journal.audit(who, "rollout.approve", rollout_id, "refused: no such rollout")
        err.print(f"no rollout {rollout_id!r} in {journal.url}", markup=False)
        raise typer.Exit(2) from None
    except (PermissionError, ValueError) as exc:
        journal.audit(who, "rollout.approve", rollout_id, f"refused: {exc}")
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    journal.audit(who, "rollout.approve", rollout_id, f"approved group {group}")
    out.print(f"rollout {rollout_id}: group {group} approved by {who}", markup=False)


@rollout_app.command("status")
def status(
    rollout_id: Annotated[str | None, typer.Argument(help="A rollout (default: list them).")] = None,
    database: Database = None,
    root: Root = Path("."),
) -> None:
    """List rollouts, or show one: its groups and site runs."""
    journal = _journal(database, root)
    if rollout_id is None:
        table = Table("id", "actor", "state", "desired", "stacks", "message", box=None)
        for run in journal.runs("rollout"):
            table.add_row(run.id, run.actor, run.state, run.desired, str(len(run.stacks)), run.message)
        out.print(table, width=TABLE_WIDTH)
        return
    found = journal.run(rollout_id)
    if found is None:
        err.print(f"no rollout {rollout_id!r} in {journal.url}")
        raise typer.Exit(2)
    out.print(f"rollout {found.id} by {found.actor}: {found.state} ({found.message})", markup=False)
    for g in journal.groups(rollout_id):
        out.print(
            f"  group {g.position} {g.name}: {g.state}" + (f", approved by {g.approved_by}" if g.approved_by else ""),
            markup=False,
        )
    _summary(journal, rollout_id)
