"""`edgefm lab ...`: the fleet lab — a real Kubernetes control plane for the hub and every site, on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Column, Table

from edgefm.cli.console import err, out
from edgefm.model.problems import ConfigError
from edgefm.ops.lab.runtime import ClusterStatus, Lab, LabError

lab_app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
Root = Annotated[Path, typer.Option("--root", help="The edgefm checkout.")]
LabDir = Annotated[Path | None, typer.Option("--lab-dir", help="Lab state (default: <root>/.state/lab).")]


def _lab(root: Path, lab_dir: Path | None) -> Lab:
    return Lab(root, lab_dir)


def _fail(exc: Exception) -> typer.Exit:
    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            err.print(str(problem), markup=False)
    else:
        err.print(str(exc), markup=False)
    return typer.Exit(1)


def clusters_table(statuses: list[ClusterStatus]) -> Table:
    table = Table(
        Column("cluster", no_wrap=True),
        "health",
        "nodes",
        "deployments",
        "jobs",
        "GPU pods",
        "pending",
        title="edgefm lab, from each cluster's API: nodes Ready, Deployments available, Jobs complete, "
        "GPU pods on GPU nodes, pods Pending",
        box=None,
        title_justify="left",
    )
    for s in statuses:
        deployments = [w for w in s.workloads if w.kind == "Deployment"]
        jobs = [w for w in s.workloads if w.kind == "Job"]
        on_gpu = sum(1 for _node, gpu in s.gpu_pods.values() if gpu)
        table.add_row(
            s.stack,
            "healthy" if s.healthy else (s.error or "down"),
            f"{s.nodes_ready}/{s.nodes}",
            f"{sum(w.ok for w in deployments)}/{len(deployments)}",
            f"{sum(w.ok for w in jobs)}/{len(jobs)}",
            f"{on_gpu}/{len(s.gpu_pods)}",
            str(len(s.pending)),
        )
    return table


def workloads_table(statuses: list[ClusterStatus]) -> Table:
    table = Table(
        Column("cluster", no_wrap=True),
        "workload",
        "state",
        "GPU node",
        title="what runs where",
        box=None,
        title_justify="left",
    )
    for s in statuses:
        for w in s.workloads:
            gpu_nodes = sorted(
                {node for pod, (node, _gpu) in s.gpu_pods.items() if pod.startswith(f"{w.namespace}/{w.name}-")}
            )
            state = w.ready if w.ok else f"[red]{w.ready}[/red]"
            where = ", ".join(n or "Pending" for n in gpu_nodes)
            table.add_row(s.stack, f"{w.kind} {w.namespace}/{w.name}", state, where)
    return table


def print_status(statuses: list[ClusterStatus], lab: Lab, detail: bool) -> None:
    out.print(clusters_table(statuses))
    if detail and any(s.workloads for s in statuses):
        out.print(workloads_table(statuses))
    for s in statuses:
        for pod in s.pending:
            out.print(f"  {s.stack}: pod {pod} is Pending", markup=False)


@lab_app.command()
def up(root: Root = Path("."), lab_dir: LabDir = None) -> None:
    """Start a control plane for the hub and every site (idempotent: healthy clusters are left alone)."""
    lab = _lab(root, lab_dir)
    started = time.monotonic()
    try:
        statuses = lab.up(lambda step, msg: out.print(f"{time.monotonic() - started:6.1f}s {step:<20} {msg}"))
    except (LabError, ConfigError) as exc:
        raise _fail(exc) from None
    out.print(f"lab up in {time.monotonic() - started:.1f}s")
    print_status(statuses, lab, detail=False)
    print_hints(lab, statuses)


@lab_app.command()
def status(
    root: Root = Path("."),
    lab_dir: LabDir = None,
    workloads: Annotated[bool, typer.Option("--workloads/--summary", help="List every Deployment and Job.")] = True,
) -> None:
    """Each cluster's health and what runs on it, read from its API; exit status 1 when a cluster is down."""
    lab = _lab(root, lab_dir)
    try:
        statuses = lab.status()
    except (LabError, ConfigError) as exc:
        raise _fail(exc) from None
    print_status(statuses, lab, detail=workloads)
    print_hints(lab, statuses)
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)


@lab_app.command()
def down(
    root: Root = Path("."),
    lab_dir: LabDir = None,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the lab's data and credentials.")] = False,
) -> None:
    """Stop every process the lab started (by pid); the data stays unless --purge."""
    lab = _lab(root, lab_dir)
    stopped = lab.down(purge=purge)
    for stack, names in stopped.items():
        out.print(f"{stack}: stopped {', '.join(names) if names else 'nothing (not running)'}")
    if purge:
        out.print(f"removed {lab.dir}")


def print_hints(lab: Lab, statuses: list[ClusterStatus]) -> None:
    if not statuses:
        return
    first = statuses[min(1, len(statuses) - 1)]
    out.print("Look inside:", markup=False)
    out.print(f"  kubectl --kubeconfig {_shown(first.kubeconfig)} get nodes,pods -A -o wide", markup=False)
    out.print(f"  (one kubeconfig per cluster: {_shown(lab.dir)}/<stack>/kubeconfig)", markup=False)
    out.print("Stop it: edgefm lab down   (make lab-down; add --purge to delete its data)", markup=False)


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
