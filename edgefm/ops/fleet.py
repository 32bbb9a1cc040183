"""The fleet through the Pulumi Automation API: preview, update and destroy site and hub stacks.

This is what `make demo`, the integration tests and a portal use; the CLI (`edgefm fleet ...`) wraps it.
Every preview and update is judged by the guardrails (`policies/guardrails`), which the engine runs as a
CrossGuard pack through the pack's executable analyzer: a mandatory violation fails the preview, so the stack
is stopped before anything changes. The fleet reads the findings from the engine's policy events, and checks
in process only what the analyzer protocol does not carry (the datasets bucket's retainOnDelete).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pulumi import automation as auto

from edgefm.model.stacks import LAB_DIR_ENV, RENDER_ROOT_ENV, fleet_stack_names
from edgefm.ops.guardrails import ANALYZER, Findings, retention_findings

Operation = Literal["preview", "update", "destroy"]


@dataclass(frozen=True)
class StackRun:
    """One operation on one stack: what the engine counted, how long it took, what it rendered."""

    stack: str
    operation: Operation
    changes: dict[str, int]
    seconds: float
    manifests: int = 0
    outputs: dict[str, object] = field(default_factory=dict)

    advisories: list[str] = field(default_factory=list)
    unschedulable: list[str] = field(default_factory=list)


class PolicyViolation(Exception):
    """Mandatory guardrails failed on a stack. From a preview nothing was changed; from an update (values that were
    unknown at preview) the engine stopped at the offending resource, or after the plan for a stack policy."""

    def __init__(self, stack: str, findings: list[str]) -> None:
        self.stack, self.findings = stack, findings
        super().__init__(f"{stack}: {len(findings)} mandatory guardrail violation(s):\n" + "\n".join(findings))


def _count(changes: Mapping[auto.OpType, int] | Mapping[str, int] | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for op, n in (changes or {}).items():
        key = op.value if isinstance(op, auto.OpType) else str(op)
        out[key] = out.get(key, 0) + int(n)
    return out


def plan(
    stack: auto.Stack,
    policy_packs: Sequence[str] = (),
    on_output: Callable[[str], None] | None = None,
    findings: Findings | None = None,
) -> tuple[auto.PreviewResult, list[dict[str, Any]]]:
    """Previews a stack and returns the resources it would have afterwards, with their planned inputs and
    resource options; the policy packs' findings go to `findings` (also when the preview fails on them)."""
    planned: list[dict[str, Any]] = []

    def on_event(event: auto.EngineEvent) -> None:
        if findings is not None:
            findings.on_event(event)
        pre = event.resource_pre_event
        if pre is not None and pre.metadata.new is not None and pre.metadata.op.value != "delete":
            new = pre.metadata.new
            planned.append(
                {
                    "urn": new.urn,
                    "type": new.type,
                    "inputs": new.inputs or {},
                    "protect": bool(new.protect),
                    "retainOnDelete": bool(new.retain_on_delete),
                }
            )

    result = stack.preview(policy_packs=list(policy_packs), on_output=on_output, on_event=on_event, diff=False)
    return result, planned


class Fleet:
    """Stacks of one edgefm checkout on one backend.

    `render_root` turns on render mode for every stack (manifests under `<render_root>/<stack>`); `lab_dir`
    applies every stack to its cluster in the fleet lab (`edgefm.ops.lab`) instead of the site's own;
    `workspace_options` is `edgefm.ops.engine.workspace_options` or a stand-in that returns the Automation
    API's LocalWorkspaceOptions for a work directory and extra environment.
    """

    def __init__(
        self,
        root: Path,
        workspace_options: Callable[..., auto.LocalWorkspaceOptions],
        *,
        render_root: Path | None = None,
        policy_packs: Sequence[Path] | None = None,
        extra_env: Mapping[str, str] | None = None,
        lab_dir: Path | None = None,
    ) -> None:
        if render_root is not None and lab_dir is not None:
            raise ValueError("a fleet renders manifests or applies them to the lab, not both")
        self.root = root.resolve()
        self.render_root = render_root.resolve() if render_root else None
        self.lab_dir = lab_dir.resolve() if lab_dir else None
        self.policy_packs = [str(p) for p in (policy_packs if policy_packs is not None else [self.root / ANALYZER])]
        env = dict(extra_env or {})
        if self.render_root is not None:
            env[RENDER_ROOT_ENV] = str(self.render_root)
        if self.lab_dir is not None:
            # Each stack's cluster is the lab's (`edgefm lab up`); the stack files stay as they are.
            env[LAB_DIR_ENV] = str(self.lab_dir)
        self._options = workspace_options(work_dir=self.root, extra_env=env)

    def stacks(self) -> list[str]:
        return fleet_stack_names(self.root)

    def stack(self, name: str) -> auto.Stack:
        return auto.create_or_select_stack(stack_name=name, work_dir=str(self.root), opts=self._options)

    def _manifests(self, name: str) -> int:
        if self.render_root is None:
            return 0
        return sum(1 for _ in (self.render_root / name).rglob("*.yaml"))

    def preview(self, name: str, on_output: Callable[[str], None] | None = None) -> StackRun:
        """Plans the stack with the guardrails in the engine; raises PolicyViolation on a mandatory finding."""
        started = time.monotonic()
        findings = Findings()
        try:
            result, planned = plan(self.stack(name), self.policy_packs, on_output, findings)
        except auto.CommandError:
            if findings.mandatory:
                raise PolicyViolation(name, findings.mandatory) from None
            raise
        mandatory = findings.mandatory + retention_findings(self.root, planned)
        if mandatory:
            raise PolicyViolation(name, mandatory)
        seconds = time.monotonic() - started
        return StackRun(name, "preview", _count(result.change_summary), seconds, advisories=findings.advisory)

    def up(self, name: str, on_output: Callable[[str], None] | None = None) -> StackRun:
        """Previews (and judges) first, then updates: a stack with a mandatory violation is never touched."""
        judged = self.preview(name)
        started = time.monotonic()
        # The engine judges again with every value known; a finding then still stops the update.
        findings = Findings()
        try:
            result = self.stack(name).up(
                policy_packs=self.policy_packs, on_output=on_output, on_event=findings.on_event
            )
        except auto.CommandError:
            if findings.mandatory:
                raise PolicyViolation(name, findings.mandatory) from None
            raise
        changes = _count(result.summary.resource_changes)
        outputs = {k: ("[secret]" if v.secret else v.value) for k, v in result.outputs.items()}
        seconds = time.monotonic() - started
        unschedulable = self.unschedulable(name)
        return StackRun(
            name, "update", changes, seconds, self._manifests(name), outputs, judged.advisories, unschedulable
        )

    def unschedulable(self, name: str) -> list[str]:
        """In the lab, what the update left that no node can run (a real site's scheduler would say the same)."""
        if self.lab_dir is None:
            return []
        from edgefm.ops.lab.runtime import Lab

        return Lab(self.root, self.lab_dir).unschedulable(name)

    def destroy(self, name: str, on_output: Callable[[str], None] | None = None) -> StackRun:
        """Destroys everything but protected resources (the datasets bucket), which stay in state."""
        started = time.monotonic()
        result = self.stack(name).destroy(exclude_protected=True, on_output=on_output)
        return StackRun(name, "destroy", _count(result.summary.resource_changes), time.monotonic() - started)
