"""The checkout as the portal reads it: every site stack resolved against the placement policy.

Resolution is cached per stack file (by modification time and size) and per placement file, so a page over
thousands of sites costs one `stat` per file once warm; an edited file is read again on the next request.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path
from typing import Any

from markupsafe import Markup
from pydantic import ValidationError

from edgefm.model.config import SiteSpec
from edgefm.model.placement import PLACEMENT_FILE, PlacementPolicy, ResolvedSite, load_policy, resolve
from edgefm.model.problems import ConfigError, from_validation_error
from edgefm.model.stacks import NAMESPACE, SITE_FILE_GLOB, STACKS_DIR, parse_site, read_stack_file, stack_name_of


@dataclass(frozen=True)
class SiteEntry:
    stack: str
    path: Path
    labels: dict[str, str]
    resolved: ResolvedSite | None
    # Everything `edgefm validate` would say about this stack file (credentials included).
    problems: tuple[str, ...]

    @cached_property
    def site_cells(self) -> Markup:
        """The inventory cells that depend on the stack file only (site, labels, profiles), rendered once:
        at thousands of rows, per-request template work is what costs."""
        labels = Markup("").join(
            Markup('<span class="label">{}={}</span>').format(k, v) for k, v in sorted(self.labels.items())
        )
        problems = (
            Markup(' <span class="badge bad" title="{}">{} problem(s)</span>').format(
                "\n".join(self.problems), len(self.problems)
            )
            if self.problems
            else Markup("")
        )
        profiles = ", ".join(self.resolved.matched) if self.resolved else "-"
        return Markup('<td><a href="/sites/{0}">{0}</a>{1}</td><td class="labels">{2}</td><td>{3}</td>').format(
            self.stack, problems, labels, profiles
        )

    @cached_property
    def model(self) -> str:
        """The model the site is configured to serve: a pinned version, or the channel it follows."""
        if self.resolved is None:
            return "-"
        ref = self.resolved.profile.model
        return f"{ref.name} {ref.version}" if ref.version else f"{ref.name} @{ref.channel}"

    @cached_property
    def version(self) -> str | None:
        return None if self.resolved is None else self.resolved.profile.model.version


def _entry(path: Path, policy: PlacementPolicy | None, policy_problem: str | None) -> SiteEntry:
    stack = stack_name_of(path)
    problems: list[str] = []
    labels: dict[str, str] = {}
    resolved: ResolvedSite | None = None
    try:
        raw = read_stack_file(path)
    except ConfigError as exc:
        return SiteEntry(stack, path, {}, None, tuple(str(p) for p in exc.problems))
    item = raw.get(f"{NAMESPACE}:site")
    try:
        spec = SiteSpec.model_validate(item.value if item is not None else None)
        labels = dict(spec.labels)
    except ValidationError as exc:
        spec = None
        problems += [str(p) for p in from_validation_error(stack, f"{NAMESPACE}:site", exc)]
    if spec is not None:
        if policy is None:
            problems.append(policy_problem or "placement policy unavailable")
        else:
            try:
                resolved = resolve(stack, spec, policy)
            except ConfigError as exc:
                problems += [str(p) for p in exc.problems]
        try:
            # Credential and naming checks, exactly as `edgefm validate` runs them (files as written).
            parse_site(stack, raw, env={})
        except ConfigError as exc:
            problems += [str(p) for p in exc.problems if str(p) not in problems]
    return SiteEntry(stack, path, labels, resolved, tuple(problems))


class FleetView:
    """Site stacks of one checkout (`<repo>/stacks`, `<repo>/policies/placement.yaml`)."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo.resolve()
        self.stacks_dir = self.repo / STACKS_DIR
        self.placement_path = self.repo / PLACEMENT_FILE
        self._lock = threading.Lock()
        self._policy_key: tuple[int, int] | None = None
        self._policy: PlacementPolicy | None = None
        self._policy_problem: str | None = None
        self._entries: dict[str, tuple[tuple[int, int], SiteEntry]] = {}

    def _stat(self, path: Path) -> tuple[int, int]:
        st = path.stat()
        return (st.st_mtime_ns, st.st_size)

    def policy(self) -> PlacementPolicy | None:
        with self._lock:
            return self._refresh_policy()

    def policy_problem(self) -> str | None:
        with self._lock:
            self._refresh_policy()
            return self._policy_problem

    def _refresh_policy(self) -> PlacementPolicy | None:
        try:
            key = self._stat(self.placement_path)
        except FileNotFoundError:
            key = (0, 0)
        if key != self._policy_key:
            self._policy_key = key
            self._entries.clear()  # every site resolves against the policy
            try:
                self._policy, self._policy_problem = load_policy(self.placement_path), None
            except ConfigError as exc:
                self._policy, self._policy_problem = None, str(exc)
        return self._policy

    def sites(self) -> dict[str, SiteEntry]:
        with self._lock:
            policy = self._refresh_policy()
            found: list[tuple[str, tuple[int, int]]] = []
            try:
                # scandir and plain strings: at thousands of files pathlib's overhead is most of the cost.
                with os.scandir(self.stacks_dir) as listing:
                    for item in listing:
                        if fnmatchcase(item.name, SITE_FILE_GLOB):
                            try:
                                st = item.stat()
                            except FileNotFoundError:
                                continue
                            found.append((item.name, (st.st_mtime_ns, st.st_size)))
            except FileNotFoundError:
                pass
            seen: dict[str, SiteEntry] = {}
            for name, key in sorted(found):
                cached = self._entries.get(name)
                if cached is None or cached[0] != key:
                    cached = (key, _entry(self.stacks_dir / name, policy, self._policy_problem))
                    self._entries[name] = cached
                seen[cached[1].stack] = cached[1]
            if len(self._entries) != len(found):
                names = {name for name, _ in found}
                for gone in [n for n in self._entries if n not in names]:
                    del self._entries[gone]
            return seen

    def site(self, stack: str) -> SiteEntry | None:
        return self.sites().get(stack)

    def explain(self, stack: str) -> dict[str, Any] | None:
        """`edgefm explain`'s data for a site, with each profile value beside the layer that set it."""
        entry = self.site(stack)
        if entry is None or entry.resolved is None:
            return None
        return entry.resolved.explain()
