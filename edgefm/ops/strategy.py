"""A rollout strategy as data: which stacks, in which groups, how fast, how many failures, what "healthy" means.

Read from a YAML file (`edgefm fleet rollout --strategy FILE`) or built from CLI flags, validated by pydantic at
the edge. Field names are camelCase in files (as in OCM's `rolloutStrategy`), snake_case in Python.

- `canary`: the mandatory first group (stacks by name); nothing else starts before it has succeeded and soaked.
- `groupBy`: the site label whose values order the later groups (numbers in order, then names, unlabelled last).
- `maxConcurrency`: sites updated at once within a group: a count, or a percentage of the group (at least 1).
- `maxFailures`: failed sites tolerated over the whole rollout, a count or a percentage of its sites; once more
  have failed, nothing new starts and the rollout fails (sites already running finish).
- `minSuccessTime`: a soak, in seconds, after a group has succeeded, before the next group starts; the group's
  sites are checked again at its end.
- `progressDeadline`: seconds a site may take from start until healthy; past it the site has failed.
- `approve`: groups that wait for an approval (by someone other than the rollout's starter) before they start;
  `"*"` means every group.
- `health`: the gate after each site's update (see `HealthGate`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from edgefm.model.stacks import HUB_STACK, access_stack_names

CANARY = "canary"
UNLABELLED = "unlabelled"
_PERCENT = re.compile(r"^(\d{1,3})%$")


def _quantity(value: object, name: str) -> int | str:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a count or a percentage like '10%', not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        match = _PERCENT.match(text)
        if match and int(match.group(1)) <= 100:
            return text
    raise ValueError(f"{name} must be a count or a percentage from 0% to 100%, got {value!r}")


def resolve_quantity(value: int | str, total: int, *, at_least_one: bool) -> int:
    """A count as it is; a percentage of `total`, rounded down (up to 1 where at least one is needed)."""
    count = value if isinstance(value, int) else math.floor(total * int(value.rstrip("%")) / 100)
    return max(1, count) if at_least_one else count


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel, frozen=True)


class HealthGate(_Model):
    """What must hold after a site's update before it counts as a success.

    `workloads`: the site's own cluster reports every workload edgefm manages (label
    `app.kubernetes.io/part-of=edgefm`) healthy: Deployments available, DaemonSets ready, Jobs not failed, and
    no pod Pending for longer than `pendingDeadline` seconds. Sites rendered instead of applied have no cluster
    to ask and skip this check.
    `promql`: where set, an instant query against `prometheusUrl` (the hub's telemetry) that must return a
    non-empty result (write it as a condition, e.g. `sum(rate(errors{site="{site}"}[5m])) < 0.01`);
    `{site}` is replaced by the site's name.
    The gate is polled every `interval` seconds until it holds or the site's progress deadline passes.
    """

    workloads: bool = True
    pending_deadline: Annotated[float, Field(gt=0)] = 300.0
    promql: str | None = None
    prometheus_url: str | None = None
    interval: Annotated[float, Field(gt=0)] = 5.0

    @model_validator(mode="after")
    def _query_has_a_server(self) -> Self:
        if self.promql and not self.prometheus_url:
            raise ValueError("health.promql needs health.prometheusUrl (the hub's Prometheus)")
        return self


class RolloutStrategy(_Model):
    """How a change travels through the fleet (see the module docstring for every field)."""

    stacks: list[str] = Field(default_factory=list, description="Stacks to roll out (empty: the hub and every site).")
    canary: Annotated[list[str], Field(min_length=1)]
    group_by: str = "wave"
    max_concurrency: int | str = 1
    max_failures: int | str = 0
    min_success_time: Annotated[float, Field(ge=0)] = 0.0
    progress_deadline: Annotated[float, Field(gt=0)] = 1800.0
    approve: list[str] = Field(default_factory=list)
    health: HealthGate = Field(default_factory=HealthGate)

    @field_validator("max_concurrency", mode="before")
    @classmethod
    def _concurrency(cls, value: object) -> int | str:
        quantity = _quantity(value, "maxConcurrency")
        if quantity == 0 or quantity == "0%":
            raise ValueError("maxConcurrency must be at least 1 (or a percentage above 0%)")
        return quantity

    @field_validator("max_failures", mode="before")
    @classmethod
    def _failures(cls, value: object) -> int | str:
        return _quantity(value, "maxFailures")

    @model_validator(mode="after")
    def _canary_in_stacks(self) -> Self:
        if self.stacks:
            missing = sorted(set(self.canary) - set(self.stacks))
            if missing:
                raise ValueError(f"canary stacks not in the rollout's stacks: {', '.join(missing)}")
        if len(set(self.canary)) != len(self.canary):
            raise ValueError("canary names a stack twice")
        return self

    def failure_budget(self, sites: int) -> int:
        return resolve_quantity(self.max_failures, sites, at_least_one=False)

    def concurrency(self, group_size: int) -> int:
        return resolve_quantity(self.max_concurrency, group_size, at_least_one=True)

    def needs_approval(self, group: str) -> bool:
        return "*" in self.approve or group in self.approve


class StrategyError(ValueError):
    """A strategy file or flags that do not validate; the message names each problem on one line."""


def parse_strategy(raw: Mapping[str, Any], source: str = "strategy") -> RolloutStrategy:
    try:
        return RolloutStrategy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise StrategyError(f"{source}: {problems}") from None


def load_strategy(path: Path, overrides: Mapping[str, Any] | None = None) -> RolloutStrategy:
    """A strategy file, with CLI flags (`overrides`, camelCase or snake_case keys) laid over it."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise StrategyError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise StrategyError(f"{path}: not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise StrategyError(f"{path}: a strategy is a mapping of fields, got {type(raw).__name__}")
    return parse_strategy({**raw, **(overrides or {})}, str(path))


@dataclass(frozen=True)
class Group:
    name: str
    stacks: tuple[str, ...]


def _order(value: str) -> tuple[int, float, str]:
    if value == UNLABELLED:
        return (2, 0.0, value)
    return (0, float(value), value) if value.replace(".", "", 1).isdigit() else (1, 0.0, value)


ACCESS_GROUP = "access shards"


def plan_groups(
    strategy: RolloutStrategy, stacks: Sequence[str], labels: Mapping[str, Mapping[str, str]]
) -> list[Group]:
    """The hub side first where it is part of the rollout (sites read its outputs): the hub alone, then its access
    shards; then the canary, then the other sites grouped by `groupBy`. Every canary stack must be one of
    `stacks`."""
    missing = sorted(set(strategy.canary) - set(stacks))
    if missing:
        raise StrategyError(f"canary stacks not in the fleet: {', '.join(missing)}")
    groups: list[Group] = []
    if HUB_STACK in stacks:
        groups.append(Group(HUB_STACK, (HUB_STACK,)))
    shards = access_stack_names(stacks)
    if shards:
        groups.append(Group(ACCESS_GROUP, tuple(shards)))
    hub_side = {HUB_STACK, *shards}
    canary = [s for s in strategy.canary if s not in hub_side]
    if canary:
        groups.append(Group(CANARY, tuple(canary)))
    by_value: dict[str, list[str]] = {}
    for stack in stacks:
        if stack in hub_side or stack in strategy.canary:
            continue
        value = labels.get(stack, {}).get(strategy.group_by, UNLABELLED)
        by_value.setdefault(value, []).append(stack)
    groups += [Group(f"{strategy.group_by}={v}", tuple(sorted(by_value[v]))) for v in sorted(by_value, key=_order)]
    return groups
