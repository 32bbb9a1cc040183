"""Rollouts in waves: sites are grouped by a label (`wave` in the sample fleet), each wave is previewed and
judged as a whole before any of its sites changes, and the rollout stops when a wave fails more sites than
allowed — the later waves are left untouched, as with OCM's progressive rollouts or Argo CD's RollingSync."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from edgefm.model.placement import load_policy
from edgefm.model.stacks import STACKS_DIR, is_site_stack, resolve_site_file, stack_file
from edgefm.ops.fleet import StackRun

UNLABELLED = "unlabelled"


class FleetOps(Protocol):
    def preview(self, name: str) -> StackRun: ...
    def up(self, name: str) -> StackRun: ...


@dataclass(frozen=True)
class Wave:
    label: str
    stacks: list[str]


@dataclass
class RolloutReport:
    waves: list[Wave]
    runs: list[StackRun] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    # Waves not started because an earlier one failed.
    held: list[Wave] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.held


def waves_of(labels: Mapping[str, Mapping[str, str]], label: str) -> list[Wave]:
    """Sites grouped by the value of `label`: numeric values in order, then others by name, unlabelled last."""
    groups: dict[str, list[str]] = {}
    for stack, site_labels in labels.items():
        groups.setdefault(site_labels.get(label, UNLABELLED), []).append(stack)

    def order(value: str) -> tuple[int, float, str]:
        if value == UNLABELLED:
            return (2, 0.0, value)
        return (0, float(value), value) if value.replace(".", "", 1).isdigit() else (1, 0.0, value)

    return [Wave(value, sorted(groups[value])) for value in sorted(groups, key=order)]


def site_labels(root: Path, stacks: Sequence[str]) -> dict[str, dict[str, str]]:
    """Each site stack's labels, read and validated from its stack file."""
    policy = load_policy(root / "policies" / "placement.yaml")
    out: dict[str, dict[str, str]] = {}
    for stack in stacks:
        if not is_site_stack(stack):
            continue
        resolved = resolve_site_file(stack_file(root / STACKS_DIR, stack), policy, env={})
        out[stack] = dict(resolved.site.labels)
    return out


def rollout(fleet: FleetOps, waves: Sequence[Wave], max_failures: int = 0) -> RolloutReport:
    """Wave by wave: preview every site of the wave (a failing preview counts as a failure and that site is
    not updated), then update the rest; stop before the next wave once failures exceed `max_failures`."""
    report = RolloutReport(list(waves))
    for i, wave in enumerate(waves):
        ready: list[str] = []
        for stack in wave.stacks:
            try:
                report.runs.append(fleet.preview(stack))
                ready.append(stack)
            except Exception as exc:  # any failure of one site is recorded; the wave's verdict decides
                report.failures[stack] = f"preview: {exc}"
        for stack in ready:
            try:
                report.runs.append(fleet.up(stack))
            except Exception as exc:
                report.failures[stack] = f"update: {exc}"
        if len(report.failures) > max_failures:
            report.held = list(waves[i + 1 :])
            break
    return report
