"""Onboarding a site from a form: the same models as `edgefm validate`, then a stack file on a git branch.

The form is turned into the `edgefm:site` mapping a user would write, validated by `SiteSpec` and resolved
against the placement policy (labels, profiles, hardware fit); each problem is mapped back to the form field
it is about. A valid site is committed on a new branch `onboard/<stack>` without touching the checked-out
branch (so CI previews it when the branch is merged) and written into the checkout's `stacks/` so the
fleet service can preview it at once.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edgefm.model.config import SiteSpec
from edgefm.model.placement import PlacementPolicy, resolve
from edgefm.model.problems import ConfigError, from_validation_error
from edgefm.model.stacks import NAMESPACE, STACKS_DIR, site_stack, stack_file

NODE_ROWS = 3
MAX_NODE_ROWS = 9
NODE_FIELDS = ("name", "address", "gpus", "gpu_model")


@dataclass
class OnboardResult:
    stack: str | None = None
    branch: str | None = None
    commit: str | None = None
    # Form field → messages; "_form" holds problems about the site as a whole.
    errors: dict[str, list[str]] = field(default_factory=dict)

    def add(self, where: str, message: str) -> None:
        self.errors.setdefault(where, [])
        if message not in self.errors[where]:
            self.errors[where].append(message)


def site_document(form: Mapping[str, str], label_keys: list[str]) -> dict[str, Any]:
    """The `edgefm:site` mapping the form describes (strings converted where the YAML would hold numbers)."""
    doc: dict[str, Any] = {}
    for key in ("name", "region", "jurisdiction", "network"):
        value = form.get(key, "").strip()
        if value:
            doc[key] = value
    labels = {k: form.get(f"label_{k}", "").strip() for k in label_keys}
    doc["labels"] = {k: v for k, v in labels.items() if v}
    nodes: list[dict[str, Any]] = []
    for i in range(MAX_NODE_ROWS):
        row = {f: form.get(f"node_{f}_{i}", "").strip() for f in NODE_FIELDS}
        if not any(row.values()):
            continue
        node: dict[str, Any] = {"name": row["name"], "address": row["address"]}
        if row["gpus"]:
            node["gpus"] = int(row["gpus"]) if row["gpus"].isdigit() else row["gpus"]
        if row["gpu_model"]:
            node["gpuModel"] = row["gpu_model"]
        nodes.append(node)
    doc["nodes"] = nodes
    mode = form.get("cluster_mode", "k3s") or "k3s"
    distribution = form.get("cluster_distribution", "") or ("k3s" if mode == "k3s" else "kubernetes")
    if (mode, distribution) != ("k3s", "k3s"):
        doc["cluster"] = {"mode": mode, "distribution": distribution}
    if form.get("allow_external_services") in ("on", "true", "1"):
        doc["allowExternalServices"] = True
    return doc


_NODE = re.compile(r"^nodes\[(\d+)\]\.?(\w*)")
_FIELD_OF = {"gpuModel": "gpu_model", "gpus": "gpus", "name": "name", "address": "address"}


def field_of(path: str) -> str:
    """A problem's key path (`edgefm:site.nodes[1].address`) → the form field it belongs beside."""
    rest = path.removeprefix(f"{NAMESPACE}:site").lstrip(".")
    if m := _NODE.match(rest):
        return f"node_{_FIELD_OF.get(m[2], 'name')}_{m[1]}" if m[2] else f"node_name_{m[1]}"
    if rest.startswith("labels."):
        return f"label_{rest.split('.', 1)[1]}"
    head = rest.split(".", 1)[0].split("[", 1)[0]
    return {
        "name": "name",
        "region": "region",
        "jurisdiction": "jurisdiction",
        "network": "network",
        "labels": "labels",
        "nodes": "nodes",
        "cluster": "cluster_mode",
        "allowExternalServices": "allow_external_services",
    }.get(head, "_form")


def validate_site(
    form: Mapping[str, str], policy: PlacementPolicy, stacks_dir: Path
) -> tuple[SiteSpec | None, OnboardResult]:
    result = OnboardResult()
    doc = site_document(form, list(policy.labels))
    name = str(doc.get("name", ""))
    stack = site_stack(name)
    try:
        spec = SiteSpec.model_validate(doc)
    except ValidationError as exc:
        for p in from_validation_error(stack, f"{NAMESPACE}:site", exc):
            result.add(field_of(p.path), p.message)
        return None, result
    if stack_file(stacks_dir, stack).exists():
        result.add("name", f"a site named {name!r} already exists ({stack_file(stacks_dir, stack).name})")
    try:
        resolve(stack, spec, policy)
    except ConfigError as exc:
        for p in exc.problems:
            where = field_of(p.path) if p.path.startswith(f"{NAMESPACE}:site") else "_form"
            result.add(where, p.message if where != "_form" else f"{p.path}: {p.message}")
    if result.errors:
        return None, result
    result.stack = stack
    return spec, result


def stack_yaml(spec: SiteSpec, actor: str, now: datetime) -> str:
    site = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    site = {"name": spec.name, **site}
    header = (
        f"# Onboarded from the edgefm portal by {actor} at {now:%Y-%m-%d %H:%M} UTC.\n"
        "# Credentials are set with `pulumi config set --secret sshPrivateKey` (k3s) or `kubeconfig` (existing).\n"
    )
    return header + yaml.safe_dump({"config": {f"{NAMESPACE}:site": site}}, sort_keys=False, width=120)


class GitError(RuntimeError):
    pass


def _git(repo: Path, *args: str, stdin: str | None = None, env: Mapping[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise GitError(f"git {args[0]}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def commit_on_branch(repo: Path, branch: str, path: str, content: str, message: str, actor: str) -> str:
    """Commits one new file on a new branch from HEAD, through a private index: the checkout is untouched."""
    if _git(repo, "branch", "--list", branch):
        raise GitError(f"branch {branch} already exists")
    who = {
        "GIT_AUTHOR_NAME": actor,
        "GIT_AUTHOR_EMAIL": f"{actor}@edgefm-portal",
        "GIT_COMMITTER_NAME": "edgefm portal",
        "GIT_COMMITTER_EMAIL": "portal@edgefm",
    }
    blob = _git(repo, "hash-object", "-w", "--stdin", stdin=content)
    with tempfile.TemporaryDirectory(prefix="edgefm-portal-index-") as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(repo, "read-tree", "HEAD", env=index)
        _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=index)
        tree = _git(repo, "write-tree", env=index)
    commit = _git(repo, "commit-tree", tree, "-p", "HEAD", "-m", message, env=who)
    # The all-zero old value makes this fail rather than move a branch created meanwhile.
    _git(repo, "update-ref", f"refs/heads/{branch}", commit, "0" * 40)
    return commit


def onboard(
    form: Mapping[str, str], policy: PlacementPolicy, repo: Path, actor: str, now: datetime | None = None
) -> OnboardResult:
    """Validates, commits on `onboard/<stack>`, then writes the stack file into the checkout."""
    stacks_dir = repo / STACKS_DIR
    spec, result = validate_site(form, policy, stacks_dir)
    if spec is None or result.stack is None:
        return result
    stack = result.stack
    text = stack_yaml(spec, actor, now or datetime.now(UTC))
    target = stack_file(stacks_dir, stack)
    branch = f"onboard/{stack}"
    try:
        commit = commit_on_branch(
            repo, branch, f"{STACKS_DIR}/{target.name}", text, f"Onboard {stack} (from the portal, by {actor})", actor
        )
    except GitError as exc:
        result.add("_form", str(exc))
        result.stack = None
        return result
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    tmp.replace(target)
    result.branch, result.commit = branch, commit
    return result
