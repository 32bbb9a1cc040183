"""What the lab engine tests share: the sample fleet applied to the fleet lab (the `env` and `applied` session
fixtures in conftest), the CLI as a user runs it against that lab, and a site's cluster driven through its API as
an operator would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgefm.model.stacks import is_site_stack
from edgefm.ops.fleet import Fleet
from edgefm.ops.lab.kubeapi import KubeApi
from edgefm.ops.lab.runtime import Lab
from tests.harness import ROOT


@dataclass
class Env:
    project: Path
    backend: Path
    lab: Lab
    fleet: Fleet
    # Stacks the lab refused when the fleet was applied (the first lab test fails on them; the others skip them).
    refused: set[str] = field(default_factory=set)

    def api(self, stack: str) -> KubeApi:
        return KubeApi(self.lab.cluster(stack).credentials(self.lab.dir))

    def sites(self) -> list[str]:
        return [s for s in self.fleet.stacks() if is_site_stack(s) and s not in self.refused]

    def edgefm(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`edgefm ARGS --root PROJECT` as a user runs it (the CLI's own process), on this fleet's backend."""
        return subprocess.run(
            [sys.executable, "-m", "edgefm", *args, "--root", str(self.project)],
            cwd=ROOT,
            env=self.cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def cli_env(self) -> dict[str, str]:
        return {**os.environ, "EDGEFM_BACKEND_URL": self.backend.as_uri(), "COLUMNS": "200"}

    def kubeconfig(self, stack: str) -> str:
        return (self.lab.dir / stack / "kubeconfig").read_text()


@dataclass
class Applied:
    runs: dict[str, Any]
    failed: dict[str, str]


@contextmanager
def edited_placement(project: Path, edit: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """The project copy's placement policy with `edit` applied, put back afterwards."""
    path = project / "policies" / "placement.yaml"
    original = path.read_text()
    doc = yaml.safe_load(original)
    edit(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        yield
    finally:
        path.write_text(original)


def set_unschedulable(api: KubeApi, value: bool) -> list[str]:
    """Cordons (or uncordons) every node of a cluster, as `kubectl cordon` does; returns the node names."""
    names = [n["metadata"]["name"] for n in api.items("api/v1/nodes")]
    for name in names:
        api.patch(f"api/v1/nodes/{name}", {"spec": {"unschedulable": value}})
    return names


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def deployment(api: KubeApi, namespace: str, name: str) -> dict[str, Any]:
    return api.get(f"apis/apps/v1/namespaces/{namespace}/deployments/{name}")


def triton(api: KubeApi) -> dict[str, Any]:
    """The site's Triton Deployment (the one whose container is named triton)."""
    found = [
        d
        for d in api.items("apis/apps/v1/deployments")
        if any(c["name"] == "triton" for c in d["spec"]["template"]["spec"]["containers"])
    ]
    assert len(found) == 1, [d["metadata"]["name"] for d in found]
    return found[0]


def image_of(obj: Mapping[str, Any]) -> str:
    containers = obj["spec"]["template"]["spec"]["containers"]
    return str(next(c["image"] for c in containers if c["name"] == "triton"))


def process_tree(root: int) -> list[int]:
    """`root` and every process descended from it, read from /proc (parents before children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _signal(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)


def sigkill_tree(root: int) -> list[int]:
    """SIGKILLs a process and all its descendants, by pid, as a host losing power would stop them: the tree is
    frozen first (SIGSTOP, again until no new process appears), so nothing forks a child that escapes."""
    frozen: list[int] = []
    while new := [pid for pid in process_tree(root) if pid not in frozen]:
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        frozen += new
    for pid in frozen:
        _signal(pid, signal.SIGKILL)
    # SIGKILL is delivered at once but a process (a Go binary with many threads, on a busy machine) takes a moment
    # to exit: what the kill left is looked at once every process is dead (gone, or a zombie nobody reaps).
    wait_for("the killed processes to exit", lambda: all(_dead(pid) for pid in frozen), timeout=30, interval=0.1)
    return frozen


def _dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True
