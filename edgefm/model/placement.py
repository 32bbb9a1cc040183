"""Placement: label selectors choose profiles; profiles, in precedence order, decide what a site gets.

Precedence, lowest first: the policy's `defaults`, then every profile whose selector matches the site's
labels in ascending `priority`, then the site's own `overrides` (only keys a matching profile marks
`overridable`). Two matching profiles of equal priority that set the same key to different values are an
error, not a coin toss.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, model_validator

from edgefm.model import yamlfile
from edgefm.model.config import GPU_MODELS, SiteSpec
from edgefm.model.fields import DnsLabel, Model
from edgefm.model.problems import ConfigError, Problem, from_validation_error
from edgefm.model.profile import HubProfile, SiteProfile

PLACEMENT_FILE = "policies/placement.yaml"


class LabelSelectorRequirement(Model):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> Self:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs a non-empty values list")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        if self.operator == "In":
            return present and labels[self.key] in self.values
        # NotIn matches a site without the label, as in Kubernetes.
        return not present or labels[self.key] not in self.values


class LabelSelector(Model):
    """Kubernetes / Open Cluster Management label selector; an empty selector matches every site."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items()) and all(
            e.matches(labels) for e in self.match_expressions
        )

    def keys_and_values(self) -> list[tuple[str, list[str]]]:
        pairs = [(k, [v]) for k, v in self.match_labels.items()]
        return pairs + [(e.key, e.values) for e in self.match_expressions]


class PlacementRule(Model):
    """One rule of the policy (an entry of `profiles:`): sites its selector matches get its `set` values.

    The rule is not the profile: the profile is what resolution makes of defaults, every matching rule and the
    site's own overrides (`edgefm.model.profile.SiteProfile`)."""

    name: DnsLabel
    description: str = ""
    priority: int = Field(default=0, ge=0, le=1000)
    selector: LabelSelector = LabelSelector()
    set: dict[str, Any] = Field(default_factory=dict)
    overridable: list[str] = Field(default_factory=list)


class PlacementPolicy(Model):
    api_version: Literal["edgefm.io/v1"]
    kind: Literal["PlacementPolicy"]
    # The label vocabulary: every key a site may carry, with its allowed values.
    labels: dict[DnsLabel, list[str]]
    hub: HubProfile
    defaults: dict[str, Any]
    profiles: list[PlacementRule]


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping → {"a.b.c": leaf}; lists are leaves (a profile replaces them whole)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def _set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = copy.deepcopy(value)


# A layer that picks one of these drops the other: a profile following a channel replaces a pinned version.
EXCLUSIVE = {"model.version": "model.channel", "model.channel": "model.version"}


def _apply(tree: dict[str, Any], sources: dict[str, str], key: str, value: Any, source: str) -> None:
    """Sets one dotted key from a layer and records where it came from."""
    _set_path(tree, key, value)
    for stale in [k for k in sources if k == key or k.startswith(key + ".")]:
        del sources[stale]
    sources[key] = source
    other = EXCLUSIVE.get(key)
    if other is not None:
        parent, _, leaf = other.rpartition(".")
        node = tree
        for part in parent.split("."):
            node = node.get(part, {})
        node.pop(leaf, None)
        sources.pop(other, None)


def _known_paths(tree: Mapping[str, Any]) -> set[str]:
    """Every dotted path in a profile tree, interior nodes included (an override may replace a subtree)."""
    paths: set[str] = set()
    for leaf in flatten(tree):
        parts = leaf.split(".")
        paths.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return paths


def load_policy(path: Path) -> PlacementPolicy:
    """Reads and checks the placement file; every problem is reported with its key path."""
    label = str(path)
    try:
        raw = yamlfile.read(path)
    except yamlfile.FileProblem as exc:
        raise ConfigError([Problem(label, "", f"placement file {exc}")]) from None
    return parse_policy(raw, label)


def parse_policy(raw: object, label: str = PLACEMENT_FILE) -> PlacementPolicy:
    try:
        policy = PlacementPolicy.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(from_validation_error(label, "", exc)) from None
    problems: list[Problem] = []
    names = [p.name for p in policy.profiles]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem(label, "profiles", f"duplicate profile name {dup}"))
    try:
        SiteProfile.model_validate(policy.defaults)
    except ValidationError as exc:
        problems += from_validation_error(label, "defaults", exc)
    known = _known_paths(policy.defaults) | set(EXCLUSIVE)
    for i, prof in enumerate(policy.profiles):
        where = f"profiles[{i}]({prof.name})"
        for key, values in prof.selector.keys_and_values():
            if key not in policy.labels:
                problems.append(Problem(label, f"{where}.selector", f"unknown label {key!r}"))
                continue
            for value in values:
                if value not in policy.labels[key]:
                    problems.append(
                        Problem(
                            label,
                            f"{where}.selector",
                            f"label {key} has no value {value!r} in the vocabulary",
                        )
                    )
        for key in flatten(prof.set):
            if key not in known:
                problems.append(Problem(label, f"{where}.set.{key}", "not a profile key"))
        for key in prof.overridable:
            if key not in known:
                problems.append(Problem(label, f"{where}.overridable", f"{key!r} is not a profile key"))
        merged = copy.deepcopy(policy.defaults)
        scratch: dict[str, str] = {}
        for key, value in flatten(prof.set).items():
            _apply(merged, scratch, key, value, prof.name)
        try:
            SiteProfile.model_validate(merged)
        except ValidationError as exc:
            problems += from_validation_error(label, f"{where}.set", exc)
    if problems:
        raise ConfigError(problems)
    return policy


@dataclass(frozen=True)
class ResolvedSite:
    """A site after placement: its spec, its typed profile, and where each setting came from."""

    stack: str
    site: SiteSpec
    profile: SiteProfile
    matched: list[str]
    # Dotted profile key → "defaults", "profile:<name>" or "override".
    sources: dict[str, str] = field(default_factory=dict)
    # The registry channel the model version was resolved from, when the profile follows one.
    channel: str | None = None

    def source_of(self, key: str) -> str:
        """Where a setting came from: the layer that set it or the nearest enclosing subtree."""
        parts = key.split(".")
        for i in range(len(parts), 0, -1):
            found = self.sources.get(".".join(parts[:i]))
            if found:
                return found
        return "defaults"

    def explain(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "site": self.site.model_dump(mode="json", by_alias=True, exclude={"overrides"}),
            "gpuTotal": self.site.gpu_total,
            "matchedProfiles": self.matched,
            "overrides": sorted(k for k, v in self.sources.items() if v == "override"),
            "components": enabled_components(self),
            "modelChannel": None
            if self.channel is None
            else {"channel": self.channel, "resolvesTo": self.profile.model.version},
            "profile": self.profile.model_dump(mode="json", by_alias=True),
            "sources": dict(sorted(self.sources.items())),
        }


def enabled_components(resolved: ResolvedSite) -> list[str]:
    p = resolved.profile
    parts = ["ApplianceCluster", "SiteStorage"]
    if p.gpu_operator.enabled:
        parts.append("GpuOperator")
    parts += ["ModelSync"]
    if p.fine_tuning.enabled:
        parts.append("FineTuning")
    return [*parts, "ModelServing", "Monitoring"]


def resolution_inputs(site: SiteSpec) -> str:
    """Everything `resolve` reads from a site, as text: sites with equal inputs resolve to equal profiles
    (errors aside, whose messages name the stack). Keep in step with `resolve` and `check_fit`."""
    return json.dumps(
        {
            "labels": site.labels,
            "overrides": site.overrides,
            "allowExternalServices": site.allow_external_services,
            "gpuTotal": site.gpu_total,
            "gpuModels": site.gpu_models,
        },
        sort_keys=True,
        default=str,
    )


def resolve(stack: str, site: SiteSpec, policy: PlacementPolicy) -> ResolvedSite:
    """Applies the placement policy to one site; raises ConfigError naming every problem."""
    problems: list[Problem] = []
    for key, value in site.labels.items():
        if key not in policy.labels:
            problems.append(
                Problem(
                    stack,
                    f"edgefm:site.labels.{key}",
                    f"unknown label; known: {', '.join(sorted(policy.labels))}",
                )
            )
        elif value not in policy.labels[key]:
            vocabulary = ", ".join(policy.labels[key])
            problems.append(
                Problem(stack, f"edgefm:site.labels.{key}", f"value {value!r} not allowed; use one of {vocabulary}")
            )
    if problems:
        raise ConfigError(problems)

    matched = sorted(
        (p for p in policy.profiles if p.selector.matches(site.labels)), key=lambda p: (p.priority, p.name)
    )
    if not matched:
        raise ConfigError([Problem(stack, "edgefm:site.labels", "no placement profile matches these labels")])

    tree = copy.deepcopy(policy.defaults)
    sources = dict.fromkeys(flatten(tree), "defaults")
    set_by: dict[str, tuple[PlacementRule, Any]] = {}
    for prof in matched:
        for key, value in flatten(prof.set).items():
            earlier = set_by.get(key)
            if earlier and earlier[0].priority == prof.priority and earlier[1] != value:
                problems.append(
                    Problem(
                        stack,
                        key,
                        f"profiles {earlier[0].name} and {prof.name} have equal priority {prof.priority} "
                        f"and set different values",
                    )
                )
            set_by[key] = (prof, value)
            _apply(tree, sources, key, value, f"profile:{prof.name}")

    allowed = {k for p in matched for k in p.overridable}
    for override, new in site.overrides.items():
        if override not in allowed:
            hint = (
                f"overridable here: {', '.join(sorted(allowed))}" if allowed else "no matching profile allows overrides"
            )
            problems.append(Problem(stack, f"edgefm:site.overrides.{override}", f"not overridable ({hint})"))
            continue
        _apply(tree, sources, override, new, "override")
    if problems:
        raise ConfigError(problems)

    try:
        profile = SiteProfile.model_validate(tree)
    except ValidationError as exc:
        raised = from_validation_error(stack, "", exc)
        raise ConfigError(_attribute(stack, raised, sources)) from None
    resolved = ResolvedSite(stack, site, profile, [p.name for p in matched], sources)
    fit = check_fit(resolved)
    if fit:
        raise ConfigError(fit)
    return resolved


def _attribute(stack: str, problems: list[Problem], sources: Mapping[str, str]) -> list[Problem]:
    """Points a profile validation error at the place that set the value: an override or a profile."""
    out = []
    for p in problems:
        source = next((s for k, s in sources.items() if p.path == k or p.path.startswith(k + ".")), "defaults")
        if source == "override":
            out.append(Problem(stack, f"edgefm:site.overrides.{p.path}", p.message))
        else:
            out.append(Problem(stack, f"{PLACEMENT_FILE} ({source}): {p.path}", p.message))
    return out


def check_fit(resolved: ResolvedSite) -> list[Problem]:
    """Cross-checks between the site's hardware and what its profile asks of it."""
    site, prof, stack = resolved.site, resolved.profile, resolved.stack
    problems: list[Problem] = []

    def at(key: str, message: str) -> None:
        problems.append(Problem(stack, f"{key} (from {resolved.source_of(key)})", message))

    if prof.serving.expose != "cluster" and not site.allow_external_services:
        at("serving.expose", "exposes Triton outside the cluster but the site does not set allowExternalServices")
    gpus = site.gpu_total
    if gpus == 0:
        if prof.gpu_operator.enabled:
            at("gpuOperator.enabled", "the GPU operator is enabled but no node has GPUs")
        if prof.serving.gpus_per_replica:
            at("serving.gpusPerReplica", "serving asks for GPUs but no node has GPUs")
        if prof.fine_tuning.enabled:
            at("fineTuning.enabled", "fine-tuning is enabled but no node has GPUs")
        return problems
    sharing = prof.gpu_operator.sharing
    if prof.gpu_operator.enabled and sharing.mode == "mig":
        for model in site.gpu_models:
            if not GPU_MODELS[model]:
                at("gpuOperator.sharing.mode", f"MIG is not supported by GPU model {model}")
    if not prof.gpu_operator.enabled and (prof.serving.gpus_per_replica or prof.fine_tuning.enabled):
        at("gpuOperator.enabled", "GPU workloads need the GPU operator (device plugin)")
    slices = gpus * (sharing.replicas if prof.gpu_operator.enabled else 1)
    wanted = prof.serving.replicas * prof.serving.gpus_per_replica
    if prof.fine_tuning.enabled:
        if prof.fine_tuning.gpus == 0:
            at("fineTuning.gpus", "fine-tuning is enabled with 0 GPUs")
        wanted += prof.fine_tuning.gpus
    if wanted > slices:
        at(
            "serving.replicas",
            f"workloads ask for {wanted} GPUs (serving {prof.serving.replicas}x{prof.serving.gpus_per_replica}"
            f" + fine-tuning {prof.fine_tuning.gpus if prof.fine_tuning.enabled else 0})"
            f" but the appliance has {slices}",
        )
    return problems
