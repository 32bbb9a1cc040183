"""`edgefm affected --base REF`: the stacks a change touches, so CI previews only those.

The change is what a pull request shows: the working tree (or `--head`) against its merge base with REF.

  * `stacks/Pulumi.<stack>.yaml` changed → that stack; a site stack file added or removed also changes
    the hub, which holds one registry identity per site.
  * `policies/placement.yaml` changed → each site whose *resolved* profile differs between the two
    revisions (both resolved with the placement resolver), and the hub if its `hub:` versions changed.
  * program code, policies, `Pulumi.yaml`, dependencies, or any file not known to be inert → every stack.
  * documentation, tests, CI files, image build contexts and benchmarks → nothing.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Final

from edgefm.model.placement import PLACEMENT_FILE as PLACEMENT
from edgefm.model.stacks import HUB_STACK, STACKS_DIR, is_site_stack, stack_of_repo_path, stacks_in

_ZERO_SHA = re.compile(r"^0+$")

# Paths that change what every stack's program does (or how it is checked).
EVERY_STACK: Final = (
    "components/*",
    "edgefm/*",
    "policies/*",
    "__main__.py",
    "Pulumi.yaml",
    "pyproject.toml",
    "requirements.lock",
)
# Paths no preview depends on. Anything matching neither list counts as every stack: previewing too
# much costs minutes, previewing too little ships an unreviewed change.
NO_STACK: Final = (
    "*.md",
    "*.rst",
    "docs/*",
    "tests/*",
    ".github/*",
    ".ci/*",
    # Image build contexts and benchmarks: stacks name images by pinned tag in the placement policy, so a
    # rebuilt image reaches a stack only through a placement change.
    "images/*",
    "bench/*",
    # The portal (its code, access policy, demo users and browser libraries): no program imports it.
    "edgefm/portal/*",
    "portal/*",
    "tools/portal-assets/*",
    "LICENSE*",
    ".gitignore",
    ".gitattributes",
    ".editorconfig",
    "Makefile",
)


class GitError(RuntimeError):
    pass


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _nul_list(text: str) -> list[str]:
    return [p for p in text.split("\0") if p]


def changed_paths(repo: Path, base: str, head: str | None = None) -> list[str]:
    """Paths that differ between `base` and `head` (default: the working tree, untracked files included).

    Renames count as a deletion plus an addition, so both the old and the new stack are seen.
    """
    if head is not None:
        return sorted(set(_nul_list(_git(repo, "diff", "--name-only", "--no-renames", "-z", base, head))))
    tracked = _nul_list(_git(repo, "diff", "--name-only", "--no-renames", "-z", base))
    untracked = _nul_list(_git(repo, "ls-files", "--others", "--exclude-standard", "-z"))
    # A symlinked virtualenv (`.venv -> ...`) escapes the `.venv/` ignore rule; no symlink is program input.
    untracked = [p for p in untracked if not (repo / p).is_symlink()]
    return sorted(set(tracked) | set(untracked))


def merge_base(repo: Path, base: str, head: str | None) -> str:
    """Where the change branched from `base`; `base` itself if git cannot tell (e.g. a shallow clone)."""
    try:
        return _git(repo, "merge-base", base, head or "HEAD").strip()
    except GitError:
        return _git(repo, "rev-parse", "--verify", f"{base}^{{commit}}").strip()


def _matches(path: str, patterns: Iterable[str]) -> bool:
    # fnmatch's `*` also matches `/`: "tests/*" covers nested files and "*.md" any directory.
    return any(fnmatchcase(path, p) for p in patterns)


def _materialise(repo: Path, rev: str | None, dest: Path) -> Path:
    """The stack files and placement policy at `rev` (None: the working tree) as a directory to resolve."""
    if rev is None:
        return repo
    listing = _nul_list(_git(repo, "ls-tree", "-r", "-z", "--name-only", rev, "--", STACKS_DIR, PLACEMENT))
    for path in listing:
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_git(repo, "show", f"{rev}:{path}"))
    return dest


# --- adapter over the placement resolver (edgefm.model.placement / edgefm.model.stacks) ---------------------------


@dataclass(frozen=True)
class Resolution:
    """Every site's resolved profile at one revision, as comparable JSON text (or the error it raised)."""

    sites: Mapping[str, str]
    hub: str
    placement_error: str | None = None


def resolve_revision(root: Path) -> Resolution:
    """Resolves each `site-*` stack file under `root` against `root/policies/placement.yaml`.

    Only the site spec and the placement policy matter for the profile; credentials are not read, so a
    site missing a secret still resolves (its own preview will report the secret).
    """
    from pydantic import ValidationError

    from edgefm.model.config import SiteSpec
    from edgefm.model.placement import load_policy, resolve
    from edgefm.model.problems import ConfigError
    from edgefm.model.stacks import NAMESPACE, read_stack_file, stack_file

    try:
        policy = load_policy(root / PLACEMENT)
    except ConfigError as exc:
        return Resolution({}, "", placement_error=str(exc))
    sites: dict[str, str] = {}
    for stack in sorted(s for s in stacks_in(root) if is_site_stack(s)):
        try:
            raw = read_stack_file(stack_file(root / STACKS_DIR, stack))
            item = raw.get(f"{NAMESPACE}:site")
            spec = SiteSpec.model_validate(item.value if item is not None else None)
            profile = resolve(stack, spec, policy).profile
            sites[stack] = profile.model_dump_json(by_alias=True)
        except (ConfigError, ValidationError) as exc:
            # An unresolvable site is compared by its error: a new or different error is a change.
            sites[stack] = f"error: {exc}"
    return Resolution(sites, policy.hub.model_dump_json(by_alias=True))


# --- the decision -------------------------------------------------------------------------------------


@dataclass
class Affected:
    """Stack → why it is affected."""

    reasons: dict[str, list[str]] = field(default_factory=dict)

    def add(self, stack: str, reason: str) -> None:
        self.reasons.setdefault(stack, [])
        if reason not in self.reasons[stack]:
            self.reasons[stack].append(reason)

    @property
    def stacks(self) -> list[str]:
        return sorted(self.reasons)


def affected_stacks(repo: Path, base: str, head: str | None = None) -> Affected:
    result = Affected()
    _git(repo, "rev-parse", "--show-toplevel")  # not a repository: an error, not "everything changed"
    with tempfile.TemporaryDirectory(prefix="edgefm-affected-") as tmp:
        head_root = _materialise(repo, head, Path(tmp) / "head")
        current = stacks_in(head_root)
        if _ZERO_SHA.match(base):
            # A push that created the branch has no "before": everything is new.
            for stack in current:
                result.add(stack, f"no base revision ({base})")
            return result
        try:
            base_rev = merge_base(repo, base, head)
        except GitError as exc:
            print(f"edgefm affected: {exc}; treating every stack as affected", file=sys.stderr)
            for stack in current:
                result.add(stack, f"base {base} not found")
            return result
        paths = changed_paths(repo, base_rev, head)
        base_root = _materialise(repo, base_rev, Path(tmp) / "base")
        previous = stacks_in(base_root)

        placement_changed = False
        for path in paths:
            touched = stack_of_repo_path(path)
            if touched is not None:
                if touched in current:
                    result.add(touched, f"{path} changed")
            elif path == PLACEMENT:
                placement_changed = True
            elif _matches(path, NO_STACK):
                continue
            else:
                why = "changed" if _matches(path, EVERY_STACK) else "changed (not known to be inert)"
                for stack in current:
                    result.add(stack, f"{path} {why}")

        sites_before = {s for s in previous if is_site_stack(s)}
        sites_now = {s for s in current if is_site_stack(s)}
        if sites_before != sites_now and HUB_STACK in current:
            delta = [f"+{s}" for s in sorted(sites_now - sites_before)]
            delta += [f"-{s}" for s in sorted(sites_before - sites_now)]
            result.add(HUB_STACK, f"the fleet's sites changed ({', '.join(delta)}): one registry identity per site")

        if placement_changed:
            _placement_effects(result, resolve_revision(base_root), resolve_revision(head_root), current)
    return result


def _placement_effects(result: Affected, before: Resolution, after: Resolution, current: set[str]) -> None:
    if after.placement_error is not None:
        for stack in current:
            result.add(stack, f"{PLACEMENT} no longer loads")
        return
    for stack, profile in after.sites.items():
        if before.sites.get(stack) != profile:
            result.add(stack, f"resolved profile changed ({PLACEMENT})")
    if HUB_STACK in current and before.hub != after.hub:
        result.add(HUB_STACK, f"hub versions changed ({PLACEMENT} hub:)")
