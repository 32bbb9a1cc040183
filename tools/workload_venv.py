"""Build (once) and link a workload's own virtual environment, keyed by its lock files.

A workload under ``workloads/<name>/`` pins its packages in ``requirements.lock`` (installed with their
dependencies exactly as frozen) and, optionally, ``requirements-nodeps.lock`` (wheels installed without their
declared dependencies, e.g. a server binary whose Python API pins an older numpy we never import), and any
``requirements-target-<dir>.lock`` (installed without dependencies into ``<venv>/<dir>``, for a process that
needs other versions than the venv's, e.g. an embedded interpreter built against numpy 1). The venv
lives in ``~/.cache/edgefm/workloads/<name>/<hash>/``, where the hash covers both files and the Python version,
so it is built once and shared by every clone and run with the same pins; ``workloads/<name>/.venv`` links to it.
The workload's own code is not installed into the shared venv (it would tie it to one checkout): it runs with
``PYTHONPATH=src``.

    python3.11 tools/workload_venv.py workloads/bridge-defects
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LOCK = "requirements.lock"
NODEPS_LOCK = "requirements-nodeps.lock"
TARGET_LOCKS = "requirements-target-*.lock"
MARKER = ".complete"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgefm" / "workloads"


def key(workload: Path) -> str:
    digest = hashlib.sha256(f"{sys.version_info.major}.{sys.version_info.minor}\n".encode())
    for name in (LOCK, NODEPS_LOCK, *sorted(p.name for p in workload.glob(TARGET_LOCKS))):
        path = workload / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()[:16]


def pip(venv: Path, *args: str) -> None:
    cmd = ["nice", "-n", "10", str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args]
    subprocess.run(cmd, check=True)


def ensure(workload: Path) -> Path:
    if not (workload / LOCK).is_file():
        raise SystemExit(f"error: {workload / LOCK} not found; is {workload} a workload directory?")
    target = cache_root() / workload.name / key(workload)
    target.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time per workload; a second `make test` waits and then finds the venv ready.
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / MARKER).is_file():
            if target.exists():
                shutil.rmtree(target)  # an interrupted build: start over rather than trust it
            started = time.monotonic()
            print(f"building the {workload.name} venv in {target} (one time, minutes) ...", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
            pip(target, "--upgrade", "pip")
            pip(target, "-r", str(workload / LOCK))
            if (workload / NODEPS_LOCK).is_file():
                pip(target, "--no-deps", "-r", str(workload / NODEPS_LOCK))
            for lock_file in sorted(workload.glob(TARGET_LOCKS)):
                into = target / lock_file.name.removeprefix("requirements-target-").removesuffix(".lock")
                pip(target, "--no-deps", "--target", str(into), "-r", str(lock_file))
            (target / MARKER).write_text(f"built in {time.monotonic() - started:.0f}s\n")
    link = workload / ".venv"
    if link.is_symlink() or link.exists():
        if link.is_symlink() and link.resolve() == target.resolve():
            return target
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        else:
            link.unlink()
    link.symlink_to(target, target_is_directory=True)
    return target


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tools/workload_venv.py workloads/<name>", file=sys.stderr)
        return 2
    print(ensure(Path(argv[0]).resolve()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
