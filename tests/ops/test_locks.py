"""Stale stack locks and pending operations: who holds a lock, which locks may be removed, which pending creates
may be cleared. Lock files are written as the engine writes them (see edgefm.ops.locks); processes are real."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edgefm.ops.locks import (
    LockError,
    clear_stale_locks,
    owner_state,
    stack_locks,
    unsafe_pending_creates,
)

HOST = socket.gethostname()


def _go_time(at: datetime) -> str:
    """RFC 3339 with nanoseconds, as Go's encoding/json writes time.Time."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def _lock(backend: Path, stack: str, pid: int, host: str = HOST, at: datetime | None = None) -> Path:
    where = backend / ".pulumi" / "locks" / "organization" / "edgefm" / stack
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{pid}-{host}.json"
    body = {"pid": pid, "username": "ana", "hostname": host, "timestamp": _go_time(at or datetime.now(UTC))}
    path.write_text(json.dumps(body))
    (where / f"{path.name}.attrs").write_text("{}")
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_lock_of_a_process_that_is_gone_is_removed_with_its_attributes(tmp_path: Path) -> None:
    path = _lock(tmp_path, "site-a", _dead_pid())
    other = _lock(tmp_path, "site-b", _dead_pid())
    removed = clear_stale_locks(tmp_path.as_uri(), "edgefm", "site-a")
    assert [lock.path for lock in removed] == [path]
    assert not path.exists() and not path.with_name(path.name + ".attrs").exists()
    assert other.exists(), "another stack's lock is not touched"
    assert stack_locks(tmp_path.as_uri(), "edgefm", "site-a") == []


def test_a_live_owner_keeps_its_lock_and_the_message_names_it(tmp_path: Path) -> None:
    started = datetime.now(UTC) + timedelta(seconds=1)  # taken after this process started
    path = _lock(tmp_path, "site-a", os.getpid(), at=started)
    stale = _lock(tmp_path, "site-a", _dead_pid())
    with pytest.raises(LockError) as raised:
        clear_stale_locks(tmp_path.as_uri(), "edgefm", "site-a")
    message = str(raised.value)
    assert "\n" not in message
    assert f"site-a: the stack is locked by ana@{HOST} (pid {os.getpid()}" in message
    assert "which is still running" in message
    assert path.exists() and stale.exists(), "nothing is removed while any lock is held"


def test_an_owner_on_another_host_cannot_be_checked_and_is_refused(tmp_path: Path) -> None:
    path = _lock(tmp_path, "site-a", 4242, host="worker-7")
    with pytest.raises(LockError, match=r"locked by ana@worker-7 \(pid 4242.*on another host"):
        clear_stale_locks(tmp_path.as_uri(), "edgefm", "site-a")
    assert path.exists()
    assert owner_state(stack_locks(tmp_path.as_uri(), "edgefm", "site-a")[0]) == "elsewhere"


def test_a_pid_reused_by_a_process_started_after_the_lock_is_gone(tmp_path: Path) -> None:
    # This process's pid, but the lock is older than the process: whoever took it has exited.
    _lock(tmp_path, "site-a", os.getpid(), at=datetime.now(UTC) - timedelta(days=400))
    assert [owner_state(lock) for lock in stack_locks(tmp_path.as_uri(), "edgefm", "site-a")] == ["gone"]
    assert len(clear_stale_locks(tmp_path.as_uri(), "edgefm", "site-a")) == 1


def test_locks_on_other_backends_are_refused_and_unreadable_locks_named(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="file:// backends only, not s3://"):
        stack_locks("s3://bucket/state", "edgefm", "site-a")
    where = tmp_path / ".pulumi" / "locks" / "organization" / "edgefm" / "site-a"
    where.mkdir(parents=True)
    (where / "x.json").write_text("{not json")
    with pytest.raises(LockError, match=r"site-a: unreadable lock file .*x\.json"):
        stack_locks(tmp_path.as_uri(), "edgefm", "site-a")


def test_only_pending_creates_outside_kubernetes_and_edgefms_generated_values_are_unsafe() -> None:
    def op(kind: str, typ: str) -> dict[str, object]:
        return {"type": kind, "resource": {"urn": f"urn:pulumi:s::edgefm::{typ}::x", "type": typ}}

    ops = [
        op("creating", "kubernetes:apps/v1:Deployment"),
        op("creating", "pulumi-python:dynamic/edgefm:RandomSecret"),
        op("updating", "command:remote:Command"),
        op("creating", "command:remote:Command"),
        op("creating", "aws:s3/bucket:Bucket"),
    ]
    assert [o["resource"]["type"] for o in unsafe_pending_creates(ops)] == [
        "command:remote:Command",
        "aws:s3/bucket:Bucket",
    ]
