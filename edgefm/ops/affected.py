"""`edgefm affected --base REF`: the stacks a change touches, so CI previews only those.

The change is what a pull request shows: the working tree (or `--head`) against its merge base with REF.

  * `stacks/Pulumi.<stack>.yaml` changed → that stack; a site stack file added, removed or changed also
    changes the site's access shard (`hub-access-NNN`, which seals its credential to the key in that file);
    the hub stack file → the hub and every access shard (they read its spec). The hub itself never depends
    on the list of sites.
  * `policies/placement.yaml` changed → each site whose *resolved* profile differs between the two
    revisions (both resolved with the placement resolver), and the hub if its `hub:` versions changed.
  * program code, policies, `Pulumi.yaml`, dependencies, or any file not known to be inert → every stack.
  * documentation, tests, CI files, image build contexts and benchmarks → nothing.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Final

from edgefm.model.placement import PLACEMENT_FILE as PLACEMENT
from edgefm.model.stacks import (
    HUB_STACK,
    STACKS_DIR,
    access_stack_names,
    access_stack_of,
    is_site_stack,
    stack_files,
    stack_of_repo_path,
)

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


@dataclass(frozen=True)
class Tree:
    """The stack files and placement policy at one revision: repository path → git blob id, or None for a
    file in the working tree. Only names are listed; contents are read when a placement change needs them."""

    repo: Path
    rev: str | None
    files: Mapping[str, str | None]
    # Texts that stand in for files of the working tree (an edit not written yet).
    overlay: Mapping[str, str] = field(default_factory=dict)

    @property
    def stacks(self) -> set[str]:
        return {s for s in (stack_of_repo_path(p) for p in self.files) if s is not None}

    def read(self, paths: Iterable[str]) -> dict[str, str]:
        """The text of `paths`, from the working tree or with one `git cat-file --batch` for all of them."""
        wanted = [p for p in paths if p in self.files]
        if self.rev is None:
            return {p: self.overlay[p] if p in self.overlay else (self.repo / p).read_text() for p in wanted}
        ids = [self.files[p] or "" for p in wanted]
        proc = subprocess.run(
            ["git", "-C", str(self.repo), "cat-file", "--batch"],
            input="".join(f"{i}\n" for i in ids).encode(),
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise GitError(f"git cat-file --batch: {proc.stderr.decode(errors='replace').strip()}")
        out, pos, texts = proc.stdout, 0, {}
        for path in wanted:
            header_end = out.index(b"\n", pos)
            size = int(out[pos:header_end].split()[2])
            texts[path] = out[header_end + 1 : header_end + 1 + size].decode()
            pos = header_end + 1 + size + 1  # the content is followed by a newline
        return texts


def tree(repo: Path, rev: str | None) -> Tree:
    if rev is None:
        files: dict[str, str | None] = {p.relative_to(repo).as_posix(): None for p in stack_files(repo / STACKS_DIR)}
        if (repo / PLACEMENT).exists():
            files[PLACEMENT] = None
        return Tree(repo, None, files)
    listing = _nul_list(_git(repo, "ls-tree", "-r", "-z", rev, "--", STACKS_DIR, PLACEMENT))
    files = {}
    for line in listing:
        meta, path = line.split("\t", 1)
        files[path] = meta.split()[2]
    return Tree(repo, rev, files)


# --- adapter over the placement resolver (edgefm.model.placement / edgefm.model.stacks) ---------------------------


@dataclass(frozen=True)
class Resolution:
    """Every site's resolved profile at one revision, as comparable JSON text (or the error it raised)."""

    sites: Mapping[str, str]
    hub: str
    placement_error: str | None = None


class _Specs:
    """Parsed site specs by file content, shared by both revisions: an unchanged file is parsed once."""

    def __init__(self) -> None:
        self._by_text: dict[str, object] = {}

    def get(self, text: str) -> object:
        key = hashlib.sha256(text.encode()).hexdigest()
        if key not in self._by_text:
            self._by_text[key] = _parse_spec(text)
        return self._by_text[key]


def _parse_spec(text: str) -> object:
    """The validated `edgefm:site` of a stack file's text, or the error text."""
    import yaml
    from pydantic import ValidationError

    from edgefm.model.config import SiteSpec
    from edgefm.model.stacks import NAMESPACE

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster
    try:
        doc = yaml.load(text, Loader=loader) or {}
        item = (doc.get("config") or {}).get(f"{NAMESPACE}:site") if isinstance(doc, dict) else None
        return SiteSpec.model_validate(item)
    except (yaml.YAMLError, ValidationError, AttributeError) as exc:
        return f"error: {exc}"


def resolve_revision(at: Tree, specs: _Specs) -> Resolution:
    """Resolves each `site-*` stack file at one revision against that revision's placement policy.

    Only the site spec and the placement policy matter for the profile; credentials are not read, so a
    site missing a secret still resolves (its own preview will report the secret). Sites that give the
    resolver the same inputs (`resolution_inputs`) share one resolution.
    """
    from edgefm.model.config import SiteSpec
    from edgefm.model.placement import parse_policy, resolution_inputs, resolve
    from edgefm.model.problems import ConfigError

    texts = at.read(sorted(at.files))
    try:
        import yaml

        policy = parse_policy(yaml.load(texts.get(PLACEMENT, ""), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except (ConfigError, yaml.YAMLError) as exc:
        return Resolution({}, "", placement_error=str(exc))
    sites: dict[str, str] = {}
    cache: dict[str, str] = {}
    for path, text in texts.items():
        stack = stack_of_repo_path(path)
        if stack is None or not is_site_stack(stack):
            continue
        spec = specs.get(text)
        if not isinstance(spec, SiteSpec):
            sites[stack] = str(spec)
            continue
        key = resolution_inputs(spec)
        if key in cache:
            sites[stack] = cache[key]
            continue
        try:
            sites[stack] = cache[key] = resolve(stack, spec, policy).profile.model_dump_json(by_alias=True)
        except ConfigError as exc:
            # An unresolvable site is compared by its error (which names the stack): not shared.
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
    head_tree = tree(repo, head)
    current = head_tree.stacks
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
    base_tree = tree(repo, base_rev)
    shards = access_stack_names(current)

    keys_before = _public_keys(base_tree, paths)
    keys_now = _public_keys(head_tree, paths)
    placement_changed = False
    for path in paths:
        touched = stack_of_repo_path(path)
        if touched is not None:
            if touched in current:
                result.add(touched, f"{path} changed")
            moved = (path in keys_before, keys_before.get(path)) != (path in keys_now, keys_now.get(path))
            if is_site_stack(touched) and shards and moved:
                # Its shard creates or deletes the site's access, or seals to a new key.
                what = "added" if path not in keys_before else "removed" if path not in keys_now else "re-keyed"
                result.add(access_stack_of(touched, len(shards)), f"{path} {what} (a site of this shard)")
            elif touched == HUB_STACK:
                for shard in shards:
                    result.add(shard, f"{path} changed (the shards read the hub's spec)")
        elif path == PLACEMENT:
            placement_changed = True
        elif _matches(path, NO_STACK):
            continue
        else:
            why = "changed" if _matches(path, EVERY_STACK) else "changed (not known to be inert)"
            for stack in current:
                result.add(stack, f"{path} {why}")

    if placement_changed:
        specs = _Specs()
        _placement_effects(result, resolve_revision(base_tree, specs), resolve_revision(head_tree, specs), current)
    return result


class EditError(ValueError):
    """The edited placement policy does not load; the message says why."""


def affected_by_placement(repo: Path, text: str) -> Affected:
    """The stacks an edit of the placement policy not written yet would touch: the working tree resolved as it
    is and with `text` in place of `policies/placement.yaml` (the rule `affected_stacks` applies to a commit)."""
    now = tree(repo, None)
    if PLACEMENT not in now.files:
        raise EditError(f"{PLACEMENT} is not in {repo}")
    edited = Tree(repo, None, now.files, {PLACEMENT: text})
    specs = _Specs()
    after = resolve_revision(edited, specs)
    if after.placement_error is not None:
        raise EditError(f"the edited {PLACEMENT} does not load: {after.placement_error}".splitlines()[0])
    result = Affected()
    _placement_effects(result, resolve_revision(now, specs), after, now.stacks)
    return result


# GitHub runs at most 256 jobs from one matrix; fewer, fuller jobs also spend less time on setup.
MAX_MATRIX_JOBS: Final = 256


def batches(stacks: list[str], jobs: int) -> list[list[str]]:
    """`stacks` in at most `jobs` batches of near-equal size, in order (hub-side stacks sort first)."""
    if jobs < 1:
        raise ValueError(f"--batches must be at least 1, got {jobs}")
    if not stacks:
        return []
    count = min(jobs, len(stacks))
    size, extra = divmod(len(stacks), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        out.append(stacks[start:end])
        start = end
    return out


def _public_keys(at: Tree, paths: Iterable[str]) -> dict[str, object]:
    """`edgefm:sitePublicKey` of each changed site file present at this revision (None if it has none)."""
    import yaml

    from edgefm.model.stacks import NAMESPACE

    wanted = [p for p in paths if (s := stack_of_repo_path(p)) is not None and is_site_stack(s) and p in at.files]
    keys: dict[str, object] = {}
    for path, text in at.read(wanted).items():
        try:
            doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            keys[path] = ((doc or {}).get("config") or {}).get(f"{NAMESPACE}:sitePublicKey")
        except (yaml.YAMLError, AttributeError):
            keys[path] = f"unreadable: {text!r}"
    return keys


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
