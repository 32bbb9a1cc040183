"""A check's recovery of what a killed update left, on a stand-in for the Automation API's stack (the real engine's
case is test_lab_fleetops): locks of gone owners removed, a live local owner waited for, pending operations
resolved by a refresh only where that is safe."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from edgefm.ops import siteops
from edgefm.ops.locks import LockError, stack_locks


class FakeStack:
    """What `_recover` uses of `auto.Stack`: the workspace's backend and project, export, refresh."""

    def __init__(self, backend: Path | str, pending: list[dict[str, Any]]) -> None:
        self.workspace = SimpleNamespace(
            env_vars={"PULUMI_BACKEND_URL": backend if isinstance(backend, str) else backend.as_uri()},
            project_settings=lambda: SimpleNamespace(name="edgefm"),
        )
        self.pending = pending
        self.refreshes: list[dict[str, Any]] = []

    def export_stack(self) -> SimpleNamespace:
        return SimpleNamespace(deployment={"resources": [], "pending_operations": list(self.pending)})

    def refresh(self, **kwargs: Any) -> None:
        self.refreshes.append(kwargs)
        # What the engine does: a refresh settles updates and deletes; creates go only when asked to clear them.
        self.pending = [
            op for op in self.pending if op["type"] == "creating" and not kwargs.get("clear_pending_creates")
        ]


def _op(kind: str, typ: str, name: str = "x") -> dict[str, Any]:
    return {"type": kind, "resource": {"urn": f"urn:pulumi:site-a::edgefm::{typ}::{name}", "type": typ}}


def _lock(backend: Path, pid: int) -> Path:
    where = backend / ".pulumi" / "locks" / "organization" / "edgefm" / "site-a"
    where.mkdir(parents=True, exist_ok=True)
    path = where / "lock.json"
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    path.write_text(json.dumps({"pid": pid, "username": "ana", "hostname": socket.gethostname(), "timestamp": at}))
    return path


def test_a_live_local_owner_is_waited_for_then_its_lock_removed_and_pending_work_refreshed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(siteops, "LOCK_RETRY_SECONDS", 0.2)
    owner = subprocess.Popen(["sleep", "1.5"])  # an update that outlived its controller
    try:
        _lock(tmp_path, owner.pid)
        stack = FakeStack(
            tmp_path,
            [_op("updating", "kubernetes:apps/v1:Deployment", "triton"), _op("creating", "kubernetes:v1:Secret")],
        )
        t0 = time.monotonic()
        notes = siteops._recover("site-a", stack, time.time() + 30)  # type: ignore[arg-type]
        assert time.monotonic() - t0 >= 1.0, "it waited for the owner to end"
    finally:
        owner.wait()
    assert stack_locks(tmp_path.as_uri(), "edgefm", "site-a") == []
    assert notes[0].startswith(f"removed the stale lock of ana@{socket.gethostname()} (pid {owner.pid}")
    assert notes[1] == "resolved 2 interrupted operation(s) by a refresh: triton (updating), x (creating)"
    assert stack.refreshes == [{"clear_pending_creates": True, "show_secrets": False}]


def test_a_live_owner_past_the_deadline_and_an_unsafe_pending_create_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(siteops, "LOCK_RETRY_SECONDS", 0.2)
    owner = subprocess.Popen(["sleep", "30"])
    try:
        path = _lock(tmp_path, owner.pid)
        with pytest.raises(LockError, match=r"site-a: the stack is locked by .*which is still running"):
            siteops._recover("site-a", FakeStack(tmp_path, []), time.time() + 0.5)  # type: ignore[arg-type]
        assert path.exists()
    finally:
        owner.kill()
        owner.wait()

    stack = FakeStack(tmp_path, [_op("creating", "command:remote:Command", "k3s-join")])
    with pytest.raises(LockError) as raised:
        siteops._recover("site-a", stack, None)  # type: ignore[arg-type]
    message = str(raised.value)
    assert "\n" not in message and "k3s-join (creating)" in message
    assert (
        "--import-pending-creates URN ID" in message and "urn:pulumi:site-a::edgefm::command:remote:Command" in message
    )
    assert stack.refreshes == [] and not path.exists(), "the gone owner's lock went; the state was not touched"


def test_on_another_backend_locks_are_left_to_the_engine_and_pending_work_is_still_refreshed() -> None:
    stack = FakeStack("s3://state-bucket/edgefm?region=eu-central-1", [_op("deleting", "kubernetes:v1:ConfigMap")])
    notes = siteops._recover("site-a", stack, None)  # type: ignore[arg-type]
    assert notes == ["resolved 1 interrupted operation(s) by a refresh: x (deleting)"]
    assert stack.refreshes == [{"clear_pending_creates": None, "show_secrets": False}]
