"""`make lab-tools`: the fleet lab's binaries, kwok stages and CRDs, built from pinned Go modules into a cache.

Run as ``python tools/lab/build.py`` (``--status`` reports without building). Sources are pinned in
``tools/lab/pins.toml``. Where each binary comes from, first match wins:

1. ``$EDGEFM_LAB_BIN``: a directory holding all of them, used as it is (nothing is built);
2. ``PATH``: a binary found there is used as it is;
3. the cache (``$EDGEFM_LAB_CACHE``, default ``${XDG_CACHE_HOME:-~/.cache}/edgefm/lab``), built once:

    bin/        kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok
    stages/     kwok stage definitions (copied from the kwok module)
    crds/       CustomResourceDefinitions (copied from each vendor's module)
    build/      wrapper Go modules and build logs (scratch)
    gocache/    GOCACHE (scratch; GOMODCACHE stays Go's default so downloads are shared)
    stamps/     one JSON stamp per artefact: the module, version and flags it was built from
    lab.json    the manifest `edgefm lab` reads

A second run finds every stamp current and does nothing. A lock on the cache lets concurrent runs (two
worktrees, `make -j`) wait for each other instead of building twice.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

PINS_FILE: Final = Path(__file__).resolve().parent / "pins.toml"
SCHEMA: Final = 1  # bump when the stamp or manifest layout changes, so old caches rebuild
BIN_ENV: Final = "EDGEFM_LAB_BIN"
CACHE_ENV: Final = "EDGEFM_LAB_CACHE"
TAIL_LINES: Final = 30


class BuildError(RuntimeError):
    """A step failed; the message names it and ends with the tail of the tool's log."""


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser()
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgefm" / "lab"


# ----------------------------------------------------------------------------------------------- pins


@dataclass(frozen=True)
class GoSource:
    """One Go module at an exact version and the binaries (name -> main package) built from it."""

    key: str
    module: str
    version: str
    binaries: Mapping[str, str]
    ldflags_x: Sequence[str] = ()
    staging_version: str | None = None


@dataclass(frozen=True)
class FileSource:
    """Files copied out of a Go module at an exact version."""

    module: str
    version: str
    files: Sequence[str]


@dataclass(frozen=True)
class Pins:
    sources: Sequence[GoSource]
    stages: FileSource
    crds: Sequence[FileSource]

    def binaries(self) -> dict[str, GoSource]:
        return {name: src for src in self.sources for name in src.binaries}


def load_pins(path: Path = PINS_FILE) -> Pins:
    try:
        doc: dict[str, Any] = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"{path}: cannot read the lab pins: {exc}") from None
    try:
        sources = [
            GoSource(
                key,
                doc[key]["module"],
                doc[key]["version"],
                dict(doc[key]["binaries"]),
                tuple(doc[key].get("ldflags_version", ())),
                doc[key].get("staging_version"),
            )
            for key in ("kubernetes", "etcd", "kwok")
        ]
        kwok = doc["kwok"]
        stages = FileSource(kwok["module"], kwok["version"], tuple(kwok["stages"]))
        crds = [FileSource(c["module"], c["version"], tuple(c["files"])) for c in doc["crds"]]
    except (KeyError, TypeError) as exc:
        raise BuildError(f"{path}: missing or malformed entry {exc}") from None
    return Pins(sources, stages, crds)


# -------------------------------------------------------------------------------------------- helpers


class Progress:
    """One line per step, with seconds since the start, on stderr (stdout stays for --status)."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, step: str, message: str) -> None:
        print(f"{time.monotonic() - self.started:7.1f}s {step:<24} {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Holds an exclusive lock on `directory` so concurrent builders wait instead of racing."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-TAIL_LINES:])
    except OSError:
        return ""


def run_logged(step: str, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path) -> None:
    """Runs a tool with its output appended to `log`; a failure raises with the log's tail."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        code = subprocess.call(list(argv), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        raise BuildError(f"{step}: `{' '.join(argv[:3])} …` exited {code} (log: {log})\n{_tail(log)}")


def go_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"GOCACHE": str(cache / "gocache"), "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false"})
    env.pop("GOWORK", None)
    return env


def module_dir(module: str, version: str, env: Mapping[str, str]) -> Path:
    """Downloads `module@version` through the module proxy (or finds it in GOMODCACHE) and returns its dir."""
    try:
        out = subprocess.run(
            ["go", "mod", "download", "-json", f"{module}@{version}"],
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
    except FileNotFoundError:
        raise BuildError("go is not on PATH: the lab's binaries are built with the Go toolchain") from None
    info = json.loads(out.stdout or "{}") if out.stdout.strip().startswith("{") else {}
    if out.returncode != 0 or "Dir" not in info:
        reason = info.get("Error") or out.stderr.strip() or "no module directory"
        raise BuildError(f"{module}@{version}: cannot download: {reason}")
    return Path(info["Dir"])


def go_build_pinned(
    *,
    name: str,
    module: str,
    version: str,
    package: str,
    output: Path,
    cache: Path,
    ldflags_x: Sequence[str] = (),
    replaces: Mapping[str, str] | None = None,
    log: Path,
) -> None:
    """Builds `package` from `module@version` into `output` through a wrapper module.

    The wrapper requires the module, applies `replaces` (module -> version), imports the package under a
    build tag so `go mod tidy` resolves its whole graph, and builds it statically with -trimpath.
    """
    work = cache / "build" / name
    work.mkdir(parents=True, exist_ok=True)
    lines = [f"module edgefm.local/lab/{name}", "", "go 1.26", "", f"require {module} {version}", ""]
    if replaces:
        lines += ["replace (", *(f"\t{m} => {m} {v}" for m, v in sorted(replaces.items())), ")", ""]
    gomod = "\n".join(lines)
    imports = f'//go:build tools\n\npackage tools\n\nimport _ "{package}"\n'
    # Rewrite (and re-tidy) only when the wrapper changes: tidy resolves the whole graph, which takes time.
    previous = (work / "go.mod.in").read_text() if (work / "go.mod.in").exists() else None
    if previous != gomod:
        (work / "go.mod").write_text(gomod)
        (work / "tools.go").write_text(imports)
        run_logged(f"{name}: go mod tidy", ["go", "mod", "tidy"], cwd=work, env=go_env(cache), log=log)
        (work / "go.mod.in").write_text(gomod)
    flags = " ".join(["-s", "-w", *(f"-X {x}" for x in ldflags_x)])
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    argv = ["nice", "-n", "10", "go", "build", "-trimpath", "-ldflags", flags, "-o", str(partial), package]
    run_logged(f"{name}: go build", argv, cwd=work, env=go_env(cache), log=log)
    partial.replace(output)


def staging_replaces(kubernetes_dir: Path, staging_version: str) -> dict[str, str]:
    """Every `k8s.io/<x> => ./staging/...` replace of kubernetes' own go.mod, pointed at the published release."""
    out: dict[str, str] = {}
    for line in (kubernetes_dir / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "=>" and parts[2].startswith("./staging/"):
            out[parts[0]] = staging_version
    if not out:
        raise BuildError(f"{kubernetes_dir}/go.mod lists no staging modules: is this k8s.io/kubernetes?")
    return out


# --------------------------------------------------------------------------------------------- stamps


def _stamp_path(cache: Path, name: str) -> Path:
    return cache / "stamps" / f"{name}.json"


def _wanted(src: GoSource, name: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "module": src.module,
        "version": src.version,
        "package": src.binaries[name],
        "ldflags": list(src.ldflags_x),
        "staging": src.staging_version,
    }


def _current(cache: Path, name: str, wanted: Mapping[str, Any]) -> bool:
    path = _stamp_path(cache, name)
    try:
        return bool(json.loads(path.read_text()) == wanted and (cache / "bin" / name).is_file())
    except (OSError, ValueError):
        return False


def _write_stamp(cache: Path, name: str, data: Mapping[str, Any]) -> None:
    path = _stamp_path(cache, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------------------- resolve


@dataclass(frozen=True)
class Choice:
    name: str
    path: Path
    origin: str  # "env", "path", "cache" (built, current) or "missing"


def choose(pins: Pins, cache: Path, env: Mapping[str, str] = os.environ) -> list[Choice]:
    """Where each binary comes from now, without building anything."""
    out: list[Choice] = []
    given = env.get(BIN_ENV)
    for name, src in pins.binaries().items():
        if given:
            path = Path(given).expanduser() / name
            out.append(Choice(name, path, "env" if os.access(path, os.X_OK) else "missing"))
            continue
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            out.append(Choice(name, Path(found), "path"))
        elif _current(cache, name, _wanted(src, name)):
            out.append(Choice(name, cache / "bin" / name, "cache"))
        else:
            out.append(Choice(name, cache / "bin" / name, "missing"))
    return out


def build(pins: Pins, cache: Path, progress: Progress, env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Builds what is missing, copies stages and CRDs, writes the manifest; returns it."""
    given = env.get(BIN_ENV)
    with locked(cache):
        logs = cache / "build" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        genv = go_env(cache)
        choices = choose(pins, cache, env)
        if given:
            missing = [c.name for c in choices if c.origin == "missing"]
            if missing:
                raise BuildError(f"${BIN_ENV}={given} lacks executable {', '.join(missing)}")
        sources = pins.binaries()
        for choice in choices:
            if choice.origin != "missing":
                progress(choice.name, f"ready: {choice.path} ({choice.origin})")
                continue
            src = sources[choice.name]
            log = logs / f"{choice.name}.log"
            log.write_text("")
            progress(
                choice.name, f"building {src.binaries[choice.name]} from {src.module}@{src.version} (log: {log}) …"
            )
            started = time.monotonic()
            replaces = None
            if src.staging_version:
                replaces = staging_replaces(module_dir(src.module, src.version, genv), src.staging_version)
            go_build_pinned(
                name=src.key,
                module=src.module,
                version=src.version,
                package=src.binaries[choice.name],
                output=cache / "bin" / choice.name,
                cache=cache,
                ldflags_x=src.ldflags_x,
                replaces=replaces,
                log=log,
            )
            _write_stamp(cache, choice.name, _wanted(src, choice.name))
            progress(choice.name, f"built in {time.monotonic() - started:.0f}s")
        stages = _copy_files(pins.stages, cache / "stages", genv)
        progress("kwok stages", f"{len(stages)} from {pins.stages.module}@{pins.stages.version}")
        crds: list[str] = []
        for src_files in pins.crds:
            crds += _copy_files(src_files, cache / "crds", genv)
            progress("crds", f"{len(src_files.files)} from {src_files.module}@{src_files.version}")
        manifest = {
            "schema": SCHEMA,
            "binaries": {c.name: str(c.path) for c in choose(pins, cache, env)},
            "origins": {c.name: c.origin for c in choose(pins, cache, env)},
            "versions": {s.key: f"{s.module}@{s.version}" for s in pins.sources},
            "stages": stages,
            "crds": crds,
        }
        (cache / "lab.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        progress("manifest", str(cache / "lab.json"))
        return manifest


def _copy_files(src: FileSource, dest: Path, env: Mapping[str, str]) -> list[str]:
    """Copies files out of a module, under <dest>/<module path>@<version>/<file name>; returns their paths."""
    target = dest / f"{src.module.replace('/', '_')}@{src.version}"
    wanted = [target / Path(f).name for f in src.files]
    if not all(p.is_file() for p in wanted):
        root = module_dir(src.module, src.version, env)
        target.mkdir(parents=True, exist_ok=True)
        for rel, out in zip(src.files, wanted, strict=True):
            if not (root / rel).is_file():
                raise BuildError(f"{src.module}@{src.version} has no file {rel} (tools/lab/pins.toml)")
            shutil.copyfile(root / rel, out)
    return [str(p) for p in wanted]


def status(pins: Pins, cache: Path, env: Mapping[str, str] = os.environ) -> int:
    """Prints where each binary comes from; exit status 1 when something still needs `make lab-tools`."""
    choices = choose(pins, cache, env)
    for c in choices:
        print(f"{c.name:<24} {c.origin:<8} {c.path}")
    manifest = cache / "lab.json"
    print(f"{'manifest':<24} {'present' if manifest.is_file() else 'missing':<8} {manifest}")
    return 0 if manifest.is_file() and all(c.origin != "missing" for c in choices) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/lab/build.py", description=__doc__.splitlines()[0])
    parser.add_argument("--status", action="store_true", help="report what is there; build nothing")
    parser.add_argument("--pins", type=Path, default=PINS_FILE, help="pins file (default: tools/lab/pins.toml)")
    args = parser.parse_args(argv)
    try:
        pins = load_pins(args.pins)
        cache = cache_dir()
        if args.status:
            return status(pins, cache)
        build(pins, cache, Progress())
    except BuildError as exc:
        print(f"lab-tools: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
