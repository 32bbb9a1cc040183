"""Bootstrap for actionlint: built from its Go module at a pinned version into a per-user cache.

`go install github.com/rhysd/actionlint/cmd/actionlint@<version>` goes through the Go module proxy (checksum
database included), so the binary is reproducible from source and no release download is trusted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Final

ACTIONLINT_VERSION: Final = "v1.7.12"
ACTIONLINT_MODULE: Final = "github.com/rhysd/actionlint/cmd/actionlint"
BUILD_TIMEOUT_S: Final = 900


class BootstrapError(RuntimeError):
    """actionlint is not in the cache and could not be built."""


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgefm" / "actionlint" / ACTIONLINT_VERSION


def installed_version(binary: Path) -> str | None:
    try:
        done = subprocess.run([str(binary), "-version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    first = done.stdout.splitlines()[0].strip() if done.returncode == 0 and done.stdout else ""
    return first or None


def ensure_actionlint(cache: Path | None = None) -> Path:
    """The cached actionlint binary, building it first if it is missing or not the pinned version."""
    target_dir = cache or cache_dir()
    binary = target_dir / "actionlint"
    if binary.is_file() and installed_version(binary) == ACTIONLINT_VERSION:
        return binary
    go = shutil.which("go")
    if go is None:
        raise BootstrapError(f"actionlint {ACTIONLINT_VERSION} is not in {target_dir} and `go` is not on PATH")
    target_dir.mkdir(parents=True, exist_ok=True)
    # Build into a scratch GOBIN and move into place, so a concurrent run never sees half a binary.
    with tempfile.TemporaryDirectory(dir=target_dir, prefix=".build-") as scratch:
        env = {**os.environ, "GOBIN": scratch, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        command = [go, "install", f"{ACTIONLINT_MODULE}@{ACTIONLINT_VERSION}"]
        nice = shutil.which("nice")
        if nice is not None:
            command = [nice, "-n", "10", *command]  # shared build machines: stay out of the way
        try:
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BootstrapError(f"building actionlint timed out after {BUILD_TIMEOUT_S}s") from exc
        built = Path(scratch) / "actionlint"
        if done.returncode != 0 or not built.is_file():
            raise BootstrapError(f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stderr.strip()}")
        os.replace(built, binary)
    version = installed_version(binary)
    if version != ACTIONLINT_VERSION:
        raise BootstrapError(f"built actionlint reports version {version!r}, expected {ACTIONLINT_VERSION}")
    return binary
