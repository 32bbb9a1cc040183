"""Stack locks of the file state backend, and what is left of an update whose process was killed.

The engine locks a stack for every update, refresh and destroy by writing a small JSON file,
`<backend>/.pulumi/locks/<org>/<project>/<stack>/<id>.json`, recording who holds it (pid, user, host, time), and
removes it when the operation ends. A process killed with SIGKILL never removes it, and every later update of
the stack then fails with "the stack is currently locked". The CLI's answer for this backend is `pulumi cancel`,
which deletes *every* lock of the stack without looking at who holds it — a live update's included. So edgefm
reads the lock files itself and removes only those whose owner is provably gone: a process on this host that no
longer runs (or whose pid now belongs to a process started after the lock was taken). A live owner, or one on
another host (whose processes this host cannot see), is refused with a message saying who holds the lock.

A killed update also leaves *pending operations* in the stack's state: the steps that had started and not
finished. The next update drops pending updates and deletes, but pending creates stay until someone says whether
the resource exists (`pulumi refresh --clear-pending-creates` or `--import-pending-creates URN ID`). edgefm
clears them where re-creating is safe: Kubernetes objects (the provider creates by server-side apply, so an
object the killed run did create is adopted, not duplicated) and edgefm's own dynamic resources (generated values
that exist only in the state). A pending create of any other type is refused with the URNs and the commands.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

OwnerState = Literal["alive", "gone", "elsewhere"]
# Pending creates that are safe to drop from the state and create again (see the module docstring).
SAFE_TO_RECREATE = ("kubernetes:", "pulumi-python:dynamic/edgefm:")
# The lock's timestamp is the owner's clock at lock time; a pid started this long after it is another process.
PID_REUSE_SLACK = 2.0


class LockError(RuntimeError):
    """A lock or pending operation edgefm will not clear on its own; the message says who and what to do."""


class LockHeld(LockError):
    """The stack is locked by a live process on this host (`alive`), or by one on another host."""

    def __init__(self, message: str, *, alive: bool) -> None:
        super().__init__(message)
        self.alive = alive


@dataclass(frozen=True)
class StackLock:
    path: Path
    pid: int
    username: str
    hostname: str
    timestamp: str

    def owner(self) -> str:
        return f"{self.username}@{self.hostname} (pid {self.pid}, since {self.timestamp})"


def backend_dir(backend_url: str) -> Path | None:
    """The directory of a `file://` backend; None for any other backend."""
    parsed = urlparse(backend_url)
    if parsed.scheme != "file":
        return None
    path = unquote(parsed.netloc + parsed.path)
    return Path(path).expanduser()


def stack_locks(backend_url: str, project: str, stack: str) -> list[StackLock]:
    """The lock files of `stack` on a file backend (any organisation directory), oldest first."""
    root = backend_dir(backend_url)
    if root is None:
        raise LockError(
            f"{stack}: edgefm reads stack locks on file:// backends only, not {urlparse(backend_url).scheme}://"
        )
    locks_dir = root / ".pulumi" / "locks"
    candidates = [*locks_dir.glob(f"*/{project}/{stack}/*.json"), *locks_dir.glob(f"{stack}/*.json")]
    locks = []
    for path in candidates:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            continue  # its owner finished meanwhile
        except (OSError, ValueError) as exc:
            raise LockError(f"{stack}: unreadable lock file {path}: {exc}") from None
        locks.append(
            StackLock(
                path,
                int(raw.get("pid", 0)),
                str(raw.get("username", "?")),
                str(raw.get("hostname", "?")),
                str(raw.get("timestamp", "?")),
            )
        )
    return sorted(locks, key=lambda lock: lock.timestamp)


def _started_at(pid: int) -> float | None:
    """A process's start time (epoch seconds) from /proc; None when it is gone, a zombie, or /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return time.time() - uptime + int(fields[19]) / ticks


def _lock_time(timestamp: str) -> float | None:
    # Go writes RFC 3339 with nanoseconds; Python's parser takes up to microseconds.
    text = timestamp.replace("Z", "+00:00")
    if "." in text:
        head, tail = text.split(".", 1)
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def owner_state(lock: StackLock, hostname: str | None = None) -> OwnerState:
    """Whether the process that took `lock` still runs: known only for owners on this host."""
    if lock.hostname != (hostname or socket.gethostname()):
        return "elsewhere"
    if lock.pid <= 0:
        return "gone"
    try:
        os.kill(lock.pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        pass  # another user's live process
    started, locked = _started_at(lock.pid), _lock_time(lock.timestamp)
    if started is None and Path("/proc").is_dir():
        return "gone"  # a zombie: it has exited, only its parent has not reaped it
    if started is not None and locked is not None and started > locked + PID_REUSE_SLACK:
        return "gone"  # the pid was reused by a process started after the lock was taken
    return "alive"


def clear_stale_locks(backend_url: str, project: str, stack: str, hostname: str | None = None) -> list[StackLock]:
    """Removes the locks of `stack` whose owner is gone and returns them; raises LockHeld, removing nothing,
    when any lock is held by a live process or by one on another host."""
    locks = stack_locks(backend_url, project, stack)
    held = [(lock, state) for lock in locks if (state := owner_state(lock, hostname)) != "gone"]
    if held:
        lock, state = held[0]
        if state == "alive":
            why = "which is still running: wait for it to end (or stop it), then resume"
        else:
            why = (
                f"on another host, which this one cannot check: if that process is gone, remove {lock.path} "
                f"(or run `pulumi cancel --stack {stack}` there), then resume"
            )
        raise LockHeld(f"{stack}: the stack is locked by {lock.owner()}, {why}", alive=state == "alive")
    for lock in locks:
        lock.path.unlink(missing_ok=True)
        # The file backend keeps each object's attributes beside it.
        lock.path.with_name(lock.path.name + ".attrs").unlink(missing_ok=True)
    return locks


def pending_operations(deployment: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The pending operations of an exported deployment (`stack export`'s `deployment`)."""
    return list((deployment or {}).get("pending_operations") or [])


def describe(operations: Iterable[Mapping[str, Any]]) -> str:
    return ", ".join(f"{op['resource']['urn'].rsplit('::', 1)[-1]} ({op['type']})" for op in operations)


def unsafe_pending_creates(operations: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pending creates of resources whose re-creation could duplicate something outside the state."""
    return [
        dict(op)
        for op in operations
        if op.get("type") == "creating" and not str(op["resource"]["type"]).startswith(SAFE_TO_RECREATE)
    ]
