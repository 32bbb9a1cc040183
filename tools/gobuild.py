"""Build pinned Go binaries into edgefm's cache: the one place that runs `go` for the project's tools.

The engine (tools/engine), the test S3 server (tools/minio) and the fleet lab's control plane build through
these helpers: a `go` that never downloads another toolchain and runs at low priority, wrapper modules with
exact requirements, builds under a per-cache lock, and binaries moved into place atomically so a half-written
one is never picked up. Nothing here is part of the product package.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

TAIL_LINES: Final = 40


def cache_root() -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/edgefm`: never inside the repository."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(cache).expanduser() / "edgefm").resolve()


class BuildError(RuntimeError):
    """A build step failed; `step` names it and `tail` holds the end of the tool's output."""

    def __init__(self, step: str, message: str, tail: str = "") -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message
        self.tail = tail


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_tool(
    args: Sequence[str],
    *,
    step: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> str:
    """Run a command; return its combined output, or raise BuildError with the output's tail."""
    try:
        proc = subprocess.run(
            list(args),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise BuildError(step, f"cannot run {args[0]}: {exc}") from exc
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(args)}\n{proc.stdout}\n")
    if proc.returncode != 0:
        raise BuildError(step, f"`{' '.join(args)}` exited with {proc.returncode}", _tail(proc.stdout))
    return proc.stdout


class Go:
    """The go command, with a build cache of its own and low CPU priority (the machine is shared)."""

    def __init__(self, gocache: Path, scratch: Path) -> None:
        go = shutil.which("go")
        if go is None:
            raise BuildError("go", "the go command is not on PATH; install Go 1.26 or newer")
        self.scratch = scratch
        self.nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        self.go = go
        self.env = {
            **os.environ,
            "GOCACHE": str(gocache),
            "GOTOOLCHAIN": "local",  # never download another toolchain
            "GOWORK": "off",
            "GO111MODULE": "on",
            "GOFLAGS": "-buildvcs=false -mod=mod",  # the wrapper modules are generated, not vendored
            "CGO_ENABLED": "0",  # static binaries, no C toolchain needed
        }

    def __call__(
        self, *args: str, step: str, cwd: Path, log: Path | None = None, env: Mapping[str, str] | None = None
    ) -> str:
        return run_tool([*self.nice, self.go, *args], step=step, cwd=cwd, env={**self.env, **(env or {})}, log=log)

    def version(self) -> str:
        return run_tool([self.go, "env", "GOVERSION"], step="go", env=self.env).strip()

    def download(self, ref: str, step: str) -> dict[str, Any] | None:
        """`go mod download -json` of one module version (Dir, GoMod), or None if the proxy refuses it."""
        scratch = self.scratch / "download"
        scratch.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [self.go, "mod", "download", "-json", ref],
            cwd=scratch,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            info: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
        except ValueError as exc:
            raise BuildError(step, f"go mod download {ref}: unreadable output", _tail(proc.stderr)) from exc
        if info.get("Error") or proc.returncode != 0 or "Dir" not in info:
            return None
        return info

    def replaces(self, gomod: Path, step: str) -> tuple[list[str], list[str]]:
        """(non-local replace flags for `go mod edit`, paths of local replacements) of a go.mod file."""
        data = json.loads(self("mod", "edit", "-json", str(gomod), step=step, cwd=gomod.parent))
        copied: list[str] = []
        local: list[str] = []
        for rep in data.get("Replace") or ():
            old, new = rep["Old"], rep["New"]
            old_ref = f"{old['Path']}@{old['Version']}" if old.get("Version") else old["Path"]
            if new.get("Version"):
                copied.append(f"-replace={old_ref}={new['Path']}@{new['Version']}")
            else:
                local.append(old["Path"])
        return copied, local


def write_wrapper(work: Path, package: str) -> None:
    """A fresh wrapper directory with a tools.go that imports the binary's package."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    # The build tag keeps the main package out of every real build; `go mod tidy` still sees the import.
    (work / "tools.go").write_text(f'//go:build tools\n\npackage tools\n\nimport _ "{package}"\n')


def make_wrapper(
    go: Go,
    work: Path,
    *,
    name: str,
    requires: Sequence[str],
    edits: Sequence[str],
    step: str,
    log: Path,
) -> None:
    """Create the wrapper module, pin its direct requirements exactly, tidy it, and check nothing moved."""
    go("mod", "init", f"edgefm.local/toolchain/{name}", step=step, cwd=work, log=log)
    go("mod", "edit", *(f"-require={r}" for r in requires), *edits, step=step, cwd=work, log=log)
    go("mod", "tidy", step=step, cwd=work, log=log)
    # Minimal version selection may raise a requirement when a dependency needs a newer one; the pins are
    # exact, so that is an error here rather than a silent upgrade.
    listed = go("list", "-m", "-json", *(r.split("@", 1)[0] for r in requires), step=step, cwd=work, log=log)
    selected = {str(m["Path"]): m.get("Version") for m in json_stream(listed)}
    for req in requires:
        module, version = req.split("@", 1)
        if selected.get(module) != version:
            raise BuildError(step, f"{module} resolved to {selected.get(module)}, not the pinned {version}")


def json_stream(text: str) -> Iterator[dict[str, Any]]:
    """`go list -json` prints concatenated JSON objects."""
    decoder = json.JSONDecoder()
    idx = 0
    while True:
        while idx < len(text) and text[idx].isspace():
            idx += 1
        if idx >= len(text):
            return
        obj, idx = decoder.raw_decode(text, idx)
        yield obj


def go_build(
    go: Go, work: Path, *, package: str, output: Path, version_var: str, version: str, step: str, log: Path
) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    ldflags = f"-s -w -X {version_var}={version}"
    go("build", "-trimpath", "-o", str(output), "-ldflags", ldflags, package, step=step, cwd=work, log=log)


def install_file(src: Path, dest: Path, mode: int = 0o755) -> None:
    """Copy then rename, so a half-written binary never sits at the final path."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    tmp.chmod(mode)
    tmp.replace(dest)


def make_writable(tree: Path) -> None:
    """The module cache is read-only; the copy must accept generated files."""
    for path in [tree, *tree.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One build at a time per cache directory (parallel test sessions, two shells)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_binary(dest: Path, build: Callable[[Path], Path], *, lock_dir: Path | None = None) -> tuple[Path, bool]:
    """`dest` if it is an executable file; otherwise `build(scratch_dir)` under the cache lock, and the binary it
    returns is moved to `dest`. Returns (dest, whether it was built now)."""
    if dest.is_file() and os.access(dest, os.X_OK):
        return dest, False
    with locked(lock_dir or dest.parent):
        if dest.is_file() and os.access(dest, os.X_OK):  # another process built it while we waited
            return dest, False
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".build-") as scratch:
            built = build(Path(scratch))
            install_file(built, dest)
    return dest, True


def go_install(go: Go, ref: str, binary: str, scratch: Path, *, step: str, log: Path | None = None) -> Path:
    """`go install -trimpath module/pkg@version` into `scratch`; for modules whose go.mod has no local replace."""
    # `-mod=mod` (wrapper builds) does not apply to `install pkg@version`, which ignores any current module.
    env = {"GOBIN": str(scratch), "GOFLAGS": "-buildvcs=false"}
    go("install", "-trimpath", ref, step=step, cwd=scratch, log=log, env=env)
    return scratch / binary
