"""A profile change, previewed fleet-wide before anything changes: which sites it reaches and how.

The edited placement policy is checked exactly as `edgefm validate` checks the file; the fleet service then
previews it on the engine as a job (exactly the stacks `edgefm affected` finds, each with the edited policy in
its workspace). Beside each affected site's planned steps the page shows its profile diff: the profile keys
whose value changes, the site resolved under the current and the edited policy.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from edgefm.model.placement import EXCLUSIVE, PlacementPolicy, flatten, parse_policy, resolve
from edgefm.model.problems import ConfigError
from edgefm.portal.fleetview import SiteEntry

MISSING = "(unset)"


@dataclass(frozen=True)
class KeyDiff:
    key: str
    before: Any
    after: Any


@dataclass(frozen=True)
class SiteChange:
    stack: str
    diffs: list[KeyDiff] = field(default_factory=list)
    # The site no longer resolves under the edited policy: why.
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ChangePlan:
    layer: str
    key: str
    value: Any
    affected: list[SiteChange]
    unchanged: int


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def _drop(tree: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node: Any = tree
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def parse_value(text: str) -> Any:
    """The new value as YAML (so `2`, `true`, `"1.2.0"` and `{mode: none}` mean what they do in the file)."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ValueError(f"not a YAML value: {exc}".splitlines()[0]) from None


def edited_policy(raw: Mapping[str, Any], layer: str, key: str, value: Any) -> PlacementPolicy:
    """The placement document with one key set in `defaults` or in one profile's `set`; checked whole."""
    return parse_policy(_edited(raw, layer, key, value))


def edited_text(raw: Mapping[str, Any], layer: str, key: str, value: Any) -> str:
    """The edited placement document as YAML, what a workspace previewing the change reads."""
    return yaml.safe_dump(_edited(raw, layer, key, value), sort_keys=False, allow_unicode=True)


def parse_policy_text(text: str) -> PlacementPolicy:
    return parse_policy(yaml.safe_load(text))


def _edited(raw: Mapping[str, Any], layer: str, key: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(dict(raw))
    if layer == "defaults":
        target = doc.setdefault("defaults", {})
    else:
        profiles = [p for p in doc.get("profiles", []) if isinstance(p, dict) and p.get("name") == layer]
        if not profiles:
            raise ValueError(f"no profile named {layer!r}")
        target = profiles[0].setdefault("set", {})
    other = EXCLUSIVE.get(key)
    if other is not None:
        _drop(target, other)
    _set(target, key, value)
    return doc


def _profile_of(entry: SiteEntry, policy: PlacementPolicy) -> tuple[dict[str, Any] | None, list[str]]:
    if entry.resolved is None:
        return None, list(entry.problems)
    try:
        profile = resolve(entry.stack, entry.resolved.site, policy).profile
    except ConfigError as exc:
        return None, [str(p) for p in exc.problems]
    return flatten(profile.model_dump(mode="json", by_alias=True)), []


def plan_change(
    sites: Mapping[str, SiteEntry], current: PlacementPolicy, edited: PlacementPolicy, layer: str, key: str, value: Any
) -> ChangePlan:
    affected: list[SiteChange] = []
    unchanged = 0
    for stack in sorted(sites):
        entry = sites[stack]
        before, _ = _profile_of(entry, current)
        after, problems = _profile_of(entry, edited)
        if before is None and after is None:
            unchanged += 1  # broken before and after: not this change's doing
            continue
        if after is None:
            affected.append(SiteChange(stack, [], problems))
            continue
        if before == after:
            unchanged += 1
            continue
        keys = sorted(set(before or {}) | set(after))
        diffs = [
            KeyDiff(k, (before or {}).get(k, MISSING), after.get(k, MISSING))
            for k in keys
            if (before or {}).get(k, MISSING) != after.get(k, MISSING)
        ]
        affected.append(SiteChange(stack, diffs))
    return ChangePlan(layer, key, value, affected, unchanged)
