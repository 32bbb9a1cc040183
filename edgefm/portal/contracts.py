"""What the portal needs from the layers below it, as Protocols.

The portal starts nothing long itself: rollouts and previews are jobs of the fleet service (its queue and
journal), health and drift come from whoever watches the sites' clusters. Coding the pages against these
Protocols keeps the request handlers to reads and enqueues, and lets the API and browser tests run against
an in-memory service that keeps the same contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import ConfigDict, Field

from edgefm.model.fields import DnsLabel, Model


class StrategyForm(Model):
    """The portal's rollout form; `to_ops` turns it into the fleet service's strategy document."""

    # An HTML form sends every value as text: numbers and checkboxes are parsed from it (config files are strict).
    model_config = ConfigDict(strict=False)

    stacks: list[str] = Field(min_length=1)
    # The mandatory canary group: the chosen sites that match this label selector.
    canary: str = Field(default="tier=canary", max_length=500)
    # The remaining sites, in groups by this label's value (numeric values in order, unlabelled last).
    group_by: DnsLabel = "wave"
    max_concurrency: str = Field(default="1", pattern=r"^\d+%?$")
    max_failures: str = Field(default="0", pattern=r"^\d+%?$")
    min_success_time: float = Field(default=0, ge=0, le=24 * 3600)
    progress_deadline: float = Field(default=1800, gt=0, le=7 * 24 * 3600)
    # Each group after the canary waits for an approval by someone other than the starter.
    approve_each_group: bool = True

    def to_ops(self, canary: list[str], labels: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
        later = {labels.get(s, {}).get(self.group_by, "unlabelled") for s in self.stacks if s not in canary}
        return {
            "stacks": self.stacks,
            "canary": canary,
            "groupBy": self.group_by,
            "maxConcurrency": int(self.max_concurrency) if self.max_concurrency.isdigit() else self.max_concurrency,
            "maxFailures": int(self.max_failures) if self.max_failures.isdigit() else self.max_failures,
            "minSuccessTime": self.min_success_time,
            "progressDeadline": self.progress_deadline,
            # Group names as the fleet service plans them: `<groupBy>=<value>`.
            "approve": sorted(f"{self.group_by}={v}" for v in later) if self.approve_each_group else [],
        }


# The fleet service's strategy fields (camelCase) → the form field each error belongs beside.
STRATEGY_FIELDS = {
    "stacks": "stacks",
    "canary": "canary",
    "groupBy": "group_by",
    "maxConcurrency": "max_concurrency",
    "maxFailures": "max_failures",
    "minSuccessTime": "min_success_time",
    "progressDeadline": "progress_deadline",
    "approve": "approve_each_group",
}


# What the fleet service raises for an action it refuses (one-line messages): an unknown rollout, an approval
# by the rollout's own starter, an action the rollout's state does not allow.
REFUSALS: tuple[type[Exception], ...] = (LookupError, PermissionError, ValueError)


def drift_line(entry: Mapping[str, Any]) -> str:
    """A drifted resource as the pages show it: `Kind/name: changed, properties`."""
    kind = str(entry.get("type", "")).rsplit(":", 1)[-1]
    name = str(entry.get("urn", "")).rsplit("::", 1)[-1]
    keys = ", ".join(str(k) for k in entry.get("keys") or []) or str(entry.get("op", "changed"))
    return f"{kind}/{name}: {keys}"


# Journal event kinds that end a run: a batch job (`run.*`: previews, drift checks, change previews) or a
# rollout (`rollout.*`).
TERMINAL_KINDS = frozenset(
    {"run.succeeded", "run.failed", "run.aborted", "rollout.succeeded", "rollout.failed", "rollout.aborted"}
)
TERMINAL_STATES = frozenset({"succeeded", "failed", "aborted"})


@dataclass(frozen=True)
class Event:
    """One journal event of a run; `seq` increases by one per run, so a reader resumes after the last seen."""

    seq: int
    at: datetime
    kind: str
    stack: str | None
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


class EventView(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def at(self) -> datetime: ...
    @property
    def kind(self) -> str: ...
    @property
    def stack(self) -> str | None: ...
    @property
    def message(self) -> str: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


class GroupView(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def stacks(self) -> Sequence[str]: ...
    @property
    def state(self) -> str: ...
    @property
    def approved_by(self) -> str | None: ...


class RolloutView(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def created_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def message(self) -> str: ...
    @property
    def stacks(self) -> Sequence[str]: ...
    @property
    def groups(self) -> Sequence[GroupView]: ...


class SiteRunView(Protocol):
    """One operation on one stack as the journal keeps it."""

    @property
    def id(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def stack(self) -> str: ...
    @property
    def operation(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def changes(self) -> Mapping[str, int]: ...
    @property
    def error(self) -> str | None: ...


class SiteSummaryView(Protocol):
    """One stack at a glance, as the fleet service reads it for the whole fleet in one go: its newest run, its
    newest judged preview (preview, update, check) with the guardrail findings, and its newest drift check."""

    @property
    def last_run(self) -> SiteRunView | None: ...
    @property
    def last_preview(self) -> SiteRunView | None: ...
    @property
    def advisories(self) -> Sequence[str]: ...
    # The drifted resources its newest drift check found (urn, type, op, keys); none after a reconcile.
    @property
    def drift(self) -> Sequence[Mapping[str, Any]]: ...
    # When that check ended; None: never checked.
    @property
    def drift_checked_at(self) -> datetime | None: ...


class ChangeSiteView(Protocol):
    """One stack a previewed change affects: why, its preview's site run, and its planned steps once done."""

    @property
    def stack(self) -> str: ...
    @property
    def run(self) -> SiteRunView: ...
    @property
    def reasons(self) -> Sequence[str]: ...
    @property
    def steps(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def advisories(self) -> Sequence[str]: ...


class ChangePreviewView(Protocol):
    """A placement edit previewed on the engine before it is made: the edit, the run's state, the stacks."""

    @property
    def id(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def change(self) -> str: ...
    @property
    def placement(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def sites(self) -> Sequence[ChangeSiteView]: ...


@dataclass(frozen=True)
class PreviewRecord:
    """A site run's preview as journaled: planned steps (`urn`, `op`, changed `keys`) and guardrail advisories."""

    steps: Sequence[Mapping[str, Any]]
    advisories: Sequence[str]


class AuditEntryView(Protocol):
    @property
    def at(self) -> datetime: ...
    @property
    def actor(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def result(self) -> str: ...


class FleetServiceAPI(Protocol):
    """The fleet operations service (edgefm.ops.service.FleetService): jobs, journal and audit.

    The service audits the actions it runs (rollout.*, preview.start, drift.start, change.preview), refusals
    included; the portal audits what only it sees (sign-in, onboarding, its own refusals)."""

    def start_rollout(self, strategy: Any, actor: str) -> str: ...
    def approve(self, rollout_id: str, actor: str) -> None: ...
    def pause(self, rollout_id: str, actor: str) -> None: ...
    def resume(self, rollout_id: str, actor: str) -> None: ...
    def abort(self, rollout_id: str, actor: str) -> None: ...
    def start_preview(self, stacks: list[str], actor: str) -> str: ...
    def start_drift(self, stacks: list[str], actor: str) -> str: ...
    def start_change_preview(self, placement: str, change: str, actor: str) -> str: ...
    def change_preview(self, run_id: str) -> ChangePreviewView | None: ...
    def events(self, run_id: str, after_seq: int = 0) -> Sequence[EventView]: ...
    def rollouts(self) -> Sequence[RolloutView]: ...
    def rollout(self, rollout_id: str) -> RolloutView | None: ...
    def site_runs(self, stack: str) -> Sequence[SiteRunView]: ...
    # Every stack's summary in one read (the inventory's: one query for the fleet, not one per site).
    def site_summaries(self, stacks: list[str] | None = None) -> Mapping[str, SiteSummaryView]: ...
    # A stack's outputs after its newest update, secret outputs masked; None when none was recorded.
    def outputs(self, stack: str) -> Mapping[str, Any] | None: ...
    def audit(self, actor: str, action: str, target: str, result: str) -> None: ...
    def audit_log(self, limit: int) -> Sequence[AuditEntryView]: ...


class PreviewSource(Protocol):
    """The journaled preview of one site run (the fleet service's journal keeps it beside the run)."""

    def preview_of(self, site_run_id: str) -> PreviewRecord | None: ...


StrategyFactory = Callable[[Mapping[str, Any]], Any]


Health = Literal["healthy", "degraded", "unreachable", "unknown"]


@dataclass(frozen=True)
class SiteStatus:
    """What a site's own cluster says: health of the workloads edgefm manages, the served model, and drift when
    the watcher detects it itself (the journal's drift checks take precedence: `SiteSummaryView`)."""

    health: Health = "unknown"
    detail: str = ""
    # Drifted resources: "kind/name: property, property".
    drift: tuple[str, ...] = ()
    served_model_version: str | None = None
    checked_at: datetime | None = None


class SiteStatusSource(Protocol):
    """Health and drift per site stack, as last observed (reading live clusters is the source's job)."""

    def statuses(self) -> Mapping[str, SiteStatus]: ...


class NoStatus:
    """No cluster is watched: every site's health and drift is unknown, and the pages say so."""

    def statuses(self) -> Mapping[str, SiteStatus]:
        return {}
