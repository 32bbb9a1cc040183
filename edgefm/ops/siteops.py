"""One operation on one stack, as a worker process runs it: each in its own workspace directory.

The Automation API's calls block, `select_stack` rewrites the workspace's current stack, and inline programs
share global state in a process: so every operation gets its own process (the executors see to that) and its
own workspace — a directory of links to the project's files, so the program, its stack files and its virtual
environment are the project's own while the engine's per-workspace state is private to the operation.

An update is: preview (the planned steps are kept as the site's diff) → the guardrails judge the plan → update
→ health gate. A *check* (a site that was mid-update when its controller died) first recovers what the killed
update left (its stale stack lock, its pending operations: see `edgefm.ops.locks`), then previews, and updates
only if the preview shows changes. Drift is a refresh in preview-only mode; reconcile is an update with refresh.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from edgefm.model.stacks import site_of_stack
from edgefm.ops.controller import SiteOutcome, SiteTask
from edgefm.ops.guardrails import Findings
from edgefm.ops.health import ClusterWorkloads, gate
from edgefm.ops.journal import REDACTED, redact
from edgefm.ops.locks import (
    LockError,
    LockHeld,
    backend_dir,
    clear_stale_locks,
    describe,
    pending_operations,
    unsafe_pending_creates,
)
from edgefm.ops.strategy import HealthGate

# What a workspace links to; the engine state and scratch of the checkout stay out.
SKIP = frozenset({".git", ".state", "out", ".pulumi", ".mypy_cache", ".ruff_cache", ".pytest_cache", "build"})
CHANGE_OPS = frozenset({"create", "update", "replace", "delete", "create-replacement", "delete-replaced"})
# Operations that stop after the judged preview: a preview of the stack as it is, and of a change not yet made
# (`change-preview`: the workspace overlays the edited files).
PREVIEW_ONLY = frozenset({"preview", "change-preview"})
# pulumi-kubernetes applies without forcing, so a field another field manager has taken over by server-side apply
# (`kubectl apply --server-side`, a controller) makes the update fail on the conflict. Reconcile exists to put
# the declared values back: it forces (the provider's documented switch for this); other updates do not.
PATCH_FORCE_ENV = "PULUMI_K8S_ENABLE_PATCH_FORCE"


@dataclass(frozen=True)
class SiteContext:
    """Where and how to run: the checkout, render mode, the backend and the passphrase, the guardrails."""

    repo: Path
    render_root: Path | None = None
    backend_url: str | None = None
    passphrase: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # The fleet lab's state directory: each stack runs against its lab cluster instead of the site's.
    lab_dir: Path | None = None
    # Files the operation sees in place of the checkout's (repository path → text): a change previewed before
    # it is made, e.g. an edited placement policy. Written into the workspace only, never into the checkout.
    overlay: Mapping[str, str] = field(default_factory=dict)


@contextmanager
def workspace(repo: Path, overlay: Mapping[str, str] | None = None) -> Iterator[Path]:
    """A private workspace directory whose entries link to the checkout's; the directories on the way to an
    overlaid file are real (their other entries links), and the overlaid file is written there."""
    edits = {_overlay_parts(path): text for path, text in (overlay or {}).items()}
    root = Path(tempfile.mkdtemp(prefix="edgefm-ws-"))
    try:
        _mirror(repo, root, edits, top=True)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _overlay_parts(path: str) -> tuple[str, ...]:
    parts = Path(path).parts
    if not parts or Path(path).is_absolute() or any(p in ("..", ".") for p in parts) or parts[0] in SKIP:
        raise ValueError(f"overlay path {path!r} is not a file of the checkout")
    return parts


def _mirror(src: Path, dest: Path, edits: Mapping[tuple[str, ...], str], *, top: bool) -> None:
    dest.mkdir(exist_ok=True)
    names = {entry.name for entry in src.iterdir()} if src.is_dir() else set()
    for name in sorted(names | {parts[0] for parts in edits}):
        if top and name in SKIP:
            continue
        inner = {parts[1:]: text for parts, text in edits.items() if parts[0] == name}
        if not inner:
            (dest / name).symlink_to(src / name)
        elif () in inner:
            (dest / name).write_text(inner[()])  # a new file in the workspace: the checkout's stays as it is
        else:
            _mirror(src / name, dest / name, inner, top=False)


def changes_of(summary: Mapping[Any, int] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for op, n in (summary or {}).items():
        key = op.value if isinstance(op, auto.OpType) else str(op)
        out[key] = out.get(key, 0) + int(n)
    return out


def public_outputs(outputs: Mapping[str, auto.OutputValue]) -> dict[str, Any]:
    """Stack outputs fit for the journal and a page: a value the engine marks secret is masked, and so is any
    value under a credential-like key or carrying Pulumi's secret marker (`edgefm.ops.journal.redact`)."""
    return dict(redact({k: REDACTED if v.secret else v.value for k, v in outputs.items()}))


def restore_default_signals() -> None:
    """Background jobs start with SIGINT ignored, and the engine then waits 5 s on its language host at the end
    of every run: a worker restores the default handling before it starts any."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _fleet(ctx: SiteContext, root: Path) -> Any:
    from edgefm.ops.engine import recorded_pulumi_command, require_manifest, workspace_options
    from edgefm.ops.fleet import Fleet
    from edgefm.ops.guardrails import ANALYZER

    manifest = require_manifest()
    # The engine runs the guardrails through the pack's executable analyzer, whatever its language host.
    packs = [root / ANALYZER]

    def options(**kwargs: Any) -> auto.LocalWorkspaceOptions:
        return workspace_options(
            manifest=manifest,
            repo=ctx.repo,
            backend_url=ctx.backend_url,
            passphrase=ctx.passphrase,
            command=recorded_pulumi_command(manifest),
            **kwargs,
        )

    return Fleet(
        root, options, render_root=ctx.render_root, policy_packs=packs, extra_env=ctx.extra_env, lab_dir=ctx.lab_dir
    )


def _planned(
    steps: list[dict[str, Any]], planned: list[dict[str, Any]], findings: Findings
) -> Callable[[auto.EngineEvent], None]:
    def on_event(event: auto.EngineEvent) -> None:
        findings.on_event(event)
        pre = event.resource_pre_event
        if pre is None:
            return
        meta = pre.metadata
        op = meta.op.value
        if meta.new is not None and op != "delete":
            new = meta.new
            planned.append(
                {
                    "urn": new.urn,
                    "type": new.type,
                    "inputs": new.inputs or {},
                    "protect": bool(new.protect),
                    "retainOnDelete": bool(new.retain_on_delete),
                }
            )
        if op in CHANGE_OPS:
            steps.append({"urn": meta.urn, "type": meta.type, "op": op, "keys": changed_keys(meta)})

    return on_event


def changed_keys(meta: auto.StepEventMetadata) -> list[str]:
    """The properties a step changes: the engine's `diffs`, else the paths of its detailed diff (the Kubernetes
    provider reports only the latter, e.g. `spec.template.spec.containers[0].image`)."""
    return list(meta.diffs or []) or sorted(meta.detailed_diff or {})


def engine_errors(exc: Exception) -> str:
    """The engine's `error:` lines, once each (its full output is mostly the stack's outputs)."""
    text = str(exc)
    seen: dict[str, None] = {}
    for line in text.splitlines():
        if "error:" in line:
            seen.setdefault(line.strip().split("error:", 1)[1].strip(), None)
    return "; ".join(seen) or text.strip()[-500:]


def run_site(task: SiteTask, ctx: SiteContext) -> SiteOutcome:
    """Runs `task` to an outcome; every failure is caught and reported with the phase it happened in."""
    from edgefm.ops.guardrails import retention_findings

    worker = f"{socket.gethostname()}:{os.getpid()}"
    outcome = SiteOutcome(ok=False, phase="preview", started_at=time.time(), worker=worker)
    try:
        with workspace(ctx.repo, ctx.overlay) as root:
            if task.operation == "reconcile":
                ctx = replace(ctx, extra_env={**ctx.extra_env, PATCH_FORCE_ENV: "true"})
            fleet = _fleet(ctx, root)
            stack = fleet.stack(task.stack)
            if task.operation == "check":
                outcome.phase = "recover"
                outcome.recovered = _recover(task.stack, stack, task.deadline)
                outcome.phase = "preview"
            if task.operation in ("drift", "reconcile"):
                return _drift(task, stack, outcome)
            if task.operation == "destroy":
                outcome.phase = "destroy"
                t0 = time.monotonic()
                result = stack.destroy(exclude_protected=True, show_secrets=False)
                outcome.update_seconds = time.monotonic() - t0
                outcome.changes, outcome.ok = changes_of(result.summary.resource_changes), True
                outcome.outputs = {}  # a destroyed stack has no outputs
                return outcome
            steps: list[dict[str, Any]] = []
            planned: list[dict[str, Any]] = []
            findings = Findings()
            t0 = time.monotonic()
            try:
                result = stack.preview(
                    policy_packs=fleet.policy_packs, on_event=_planned(steps, planned, findings), diff=False
                )
            except auto.CommandError:
                if not findings.mandatory:
                    raise
                outcome.phase = "guardrails"
                outcome.error = f"{len(findings.mandatory)} mandatory guardrail violation(s): " + "; ".join(
                    findings.mandatory
                )
                return outcome
            outcome.preview_seconds = time.monotonic() - t0
            outcome.changes, outcome.steps = changes_of(result.change_summary), steps
            outcome.phase = "guardrails"
            # The engine ran the pack; only retainOnDelete, which the analyzer protocol lacks, is checked here.
            mandatory = findings.mandatory + retention_findings(root, planned)
            outcome.advisories = findings.advisory
            if mandatory:
                outcome.error = f"{len(mandatory)} mandatory guardrail violation(s): " + "; ".join(mandatory)
                return outcome
            if task.operation in PREVIEW_ONLY or (task.operation == "check" and not steps):
                outcome.ok = True
                if task.operation in PREVIEW_ONLY:
                    return outcome
            else:
                outcome.phase = "update"
                t0 = time.monotonic()
                up = _when_unlocked(
                    lambda: stack.up(policy_packs=fleet.policy_packs, show_secrets=False), task.deadline
                )
                outcome.update_seconds = time.monotonic() - t0
                outcome.changes = changes_of(up.summary.resource_changes)
                outcome.outputs = public_outputs(up.outputs)
                outcome.unschedulable = fleet.unschedulable(task.stack)
                outcome.ok = True
            outcome.phase = "health"
            return _health(task, ctx, stack, outcome)
    except LockError as exc:
        outcome.ok, outcome.error = False, str(exc)
        return outcome
    except auto.CommandError as exc:
        outcome.ok, outcome.error = False, engine_errors(exc)
        if isinstance(exc, auto.ConcurrentUpdateError):
            outcome.error = (
                f"the stack stayed locked by another update until the deadline (if that update's process was "
                f"killed, `pulumi cancel --stack {task.stack}` clears its lock): {outcome.error}"
            )
        return outcome
    except Exception as exc:  # a worker reports every failure as the site's outcome instead of dying
        outcome.ok, outcome.error = False, f"{type(exc).__name__}: {exc}"
        return outcome
    finally:
        outcome.finished_at = time.time()


LOCK_RETRY_SECONDS = 5.0


def _when_unlocked(update: Callable[[], auto.UpResult], deadline: float | None) -> auto.UpResult:
    """Runs the update, waiting while another update holds the stack's lock (one started outside edgefm, or one
    whose controller died and that is still finishing) until the deadline; state is never touched meanwhile."""
    stop = deadline if deadline is not None else time.time() + 600
    while True:
        try:
            return update()
        except auto.ConcurrentUpdateError:
            if time.time() + LOCK_RETRY_SECONDS > stop:
                raise
            time.sleep(LOCK_RETRY_SECONDS)


def _health(task: SiteTask, ctx: SiteContext, stack: auto.Stack, outcome: SiteOutcome) -> SiteOutcome:
    health = HealthGate.model_validate(task.health) if task.health is not None else None
    if health is None or task.operation in PREVIEW_ONLY:
        return outcome
    t0 = time.monotonic()
    workloads = None
    if health.workloads and ctx.render_root is None:
        output = stack.outputs().get("kubeconfig")
        if output is None or not output.value:
            outcome.ok, outcome.error = False, "the site exports no kubeconfig: its cluster cannot be checked"
            return outcome
        workloads = ClusterWorkloads(str(output.value))
    verdict = gate(site_of_stack(task.stack), health, workloads, task.deadline or time.time() + 600)
    outcome.health_seconds = time.monotonic() - t0
    if not verdict.healthy:
        outcome.ok, outcome.error = False, "unhealthy: " + "; ".join(verdict.problems[:10])
    elif task.deadline is not None and time.time() > task.deadline:
        outcome.ok, outcome.error = False, "progress deadline passed before the site was healthy"
    return outcome


def _recover(name: str, stack: auto.Stack, deadline: float | None) -> list[str]:
    """What an update killed mid-way left behind, cleared before the site is checked: the stale lock of a gone
    owner, then the pending operations, which a refresh resolves from what the cluster really has (clearing
    pending creates only where re-creating is safe). A lock whose owner still runs on this host (an update that
    outlived its controller) is waited for until the deadline; one held from another host is refused at once.
    Returns what was done; raises LockError with what is left to do by hand."""
    backend = stack.workspace.env_vars["PULUMI_BACKEND_URL"]
    project = stack.workspace.project_settings().name
    stop = deadline if deadline is not None else time.time() + 600
    removed = []
    # Lock files are read on file backends; on others a lock left behind stops the refresh below, and the
    # engine's message names it (`pulumi cancel` clears it there).
    while backend_dir(backend) is not None:
        try:
            removed = clear_stale_locks(backend, project, name)
            break
        except LockHeld as held:
            if not held.alive or time.time() + LOCK_RETRY_SECONDS > stop:
                raise
            time.sleep(LOCK_RETRY_SECONDS)
    notes = [f"removed the stale lock of {lock.owner()}: that process is gone" for lock in removed]
    pending = pending_operations(stack.export_stack().deployment)
    if not pending:
        return notes
    unsafe = unsafe_pending_creates(pending)
    if unsafe:
        urns = " ".join(op["resource"]["urn"] for op in unsafe)
        raise LockError(
            f"{name}: the killed update left creates of {describe(unsafe)} whose outcome edgefm cannot tell; "
            f"check whether they exist, then `pulumi refresh --stack {name} --import-pending-creates URN ID` or "
            f"`--clear-pending-creates` ({urns}), then resume"
        )
    creates = any(op.get("type") == "creating" for op in pending)
    stack.refresh(clear_pending_creates=creates or None, show_secrets=False)
    left = pending_operations(stack.export_stack().deployment)
    if left:
        raise LockError(f"{name}: a refresh left pending operations in the state: {describe(left)}")
    notes.append(f"resolved {len(pending)} interrupted operation(s) by a refresh: {describe(pending)}")
    return notes


def _drift_entry(meta: auto.StepEventMetadata) -> dict[str, Any] | None:
    """A drifted resource from a refresh step's result, or None. The properties are the paths of the engine's
    detailed diff (the cluster against the state: pulumi-kubernetes compares the live object pruned to the
    fields the program sets); its top-level `diffs` are left empty for Kubernetes objects."""
    keys = sorted(meta.detailed_diff or {}) or sorted(meta.diffs or [])
    op = meta.op.value
    if op == "refresh":  # the refresh phase of an update with refresh reports under the step's own name
        op = "update" if keys else "same"
    if op not in CHANGE_OPS:
        return None
    return {"urn": meta.urn, "type": meta.type, "op": op, "keys": keys}


def _drift(task: SiteTask, stack: auto.Stack, outcome: SiteOutcome) -> SiteOutcome:
    """Drift: a refresh in preview-only mode; each drifted resource once, with its changed properties.
    Reconcile: an update with refresh; its drift is what the refresh found, plus any other change the update
    made (an object deleted from the cluster is created again)."""
    drifted: dict[str, dict[str, Any]] = {}

    def on_event(event: auto.EngineEvent) -> None:
        done = event.res_outputs_event
        if done is not None and (entry := _drift_entry(done.metadata)) is not None:
            drifted.setdefault(entry["urn"], entry)

    t0 = time.monotonic()
    outcome.phase = task.operation
    if task.operation == "drift":
        result = stack.preview_refresh(on_event=on_event, show_secrets=False)
        outcome.changes = changes_of(result.change_summary)
        outcome.preview_seconds = time.monotonic() - t0
    else:
        up = stack.up(refresh=True, on_event=on_event, show_secrets=False)
        outcome.changes = changes_of(up.summary.resource_changes)
        outcome.outputs = public_outputs(up.outputs)
        outcome.update_seconds = time.monotonic() - t0
    outcome.drift, outcome.ok = list(drifted.values()), True
    return outcome
