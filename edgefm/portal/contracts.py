"""What the portal needs from the layers below it, as Protocols.

The portal starts nothing long itself: rollouts and previews are jobs of the fleet service (its queue and
journal), health and drift come from whoever watches the sites' clusters. Coding the pages against these
Protocols keeps the request handlers to reads and enqueues, and lets the API and browser tests run against
an in-memory service that keeps the same contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import Field, model_validator

from edgefm.model.fields import DnsLabel, Model


class RefusedError(Exception):
    """The fleet service refused an action (e.g. an approval by the rollout's own starter)."""


class RolloutStrategy(Model):
    """How a rollout travels: a mandatory canary group first, then the other sites grouped by a label."""

    stacks: list[str] = Field(min_length=1)
    # The canary group: sites whose label `canary_label` has value `canary_value`; it goes first, alone.
    canary_label: DnsLabel = "tier"
    canary_value: str = Field(default="canary", min_length=1, max_length=63)
    # The remaining sites, in groups by this label's value (numeric values in order).
    group_by: DnsLabel = "wave"
    max_concurrency: int = Field(default=2, ge=1, le=1000)
    # Failed sites tolerated before the rollout stops: a count ("2") or a percentage ("10%").
    max_failures: str = Field(default="0", pattern=r"^\d+%?$")
    min_success_seconds: int = Field(default=0, ge=0, le=24 * 3600)
    progress_deadline_seconds: int = Field(default=1800, ge=10, le=7 * 24 * 3600)
    # Each group after the canary waits for an approval.
    approve_each_group: bool = True

    @model_validator(mode="after")
    def _percent_range(self) -> RolloutStrategy:
        if self.max_failures.endswith("%") and int(self.max_failures[:-1]) > 100:
            raise ValueError("max_failures as a percentage must be at most 100%")
        return self


@dataclass(frozen=True)
class Event:
    """One journal event of a run; `seq` increases by one per run, so a reader resumes after the last seen."""

    seq: int
    at: datetime
    kind: str
    stack: str | None
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


RolloutState = Literal["running", "waiting-approval", "paused", "succeeded", "failed", "aborted"]


class RolloutGroupView(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def stacks(self) -> Sequence[str]: ...
    @property
    def state(self) -> str: ...


class RolloutView(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def started_by(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def groups(self) -> Sequence[RolloutGroupView]: ...
    @property
    def failures(self) -> Mapping[str, str]: ...


class SiteRunView(Protocol):
    """One operation on one stack as the journal keeps it."""

    @property
    def run_id(self) -> str: ...
    @property
    def stack(self) -> str: ...
    @property
    def operation(self) -> str: ...
    @property
    def result(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def changes(self) -> Mapping[str, int]: ...
    @property
    def outputs(self) -> Mapping[str, Any]: ...
    # Per-resource diff of a preview: [{"urn", "op", "diffs": [property paths]}].
    @property
    def diff(self) -> Sequence[Mapping[str, Any]]: ...
    @property
    def findings(self) -> Sequence[str]: ...


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
    """The fleet operations service (edgefm.ops.service.FleetService): jobs, journal and audit."""

    def start_rollout(self, strategy: RolloutStrategy, actor: str) -> str: ...
    def approve(self, rollout_id: str, actor: str) -> None: ...
    def pause(self, rollout_id: str, actor: str) -> None: ...
    def resume(self, rollout_id: str, actor: str) -> None: ...
    def abort(self, rollout_id: str, actor: str) -> None: ...
    def start_preview(self, stacks: list[str], actor: str) -> str: ...
    def events(self, run_id: str, after_seq: int = 0) -> list[Event]: ...
    def rollouts(self) -> Sequence[RolloutView]: ...
    def rollout(self, rollout_id: str) -> RolloutView | None: ...
    def site_runs(self, stack: str) -> Sequence[SiteRunView]: ...
    def audit(self, actor: str, action: str, target: str, result: str) -> None: ...
    def audit_log(self, limit: int) -> Sequence[AuditEntryView]: ...


Health = Literal["healthy", "degraded", "unreachable", "unknown"]


@dataclass(frozen=True)
class SiteStatus:
    """What a site's own cluster says: health of the workloads edgefm manages, drift, the served model."""

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
