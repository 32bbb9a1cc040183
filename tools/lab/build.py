"""`make lab-tools`: the fleet lab's binaries, kwok stages and CRDs, built from pinned Go modules into a cache.

Run as ``python -m tools.lab.build`` (``--status`` reports without building). Sources are pinned in
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
import json
import os
import shutil
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tools.gobuild import BuildError, Go, cache_root, install_file, locked, make_wrapper, write_wrapper

PINS_FILE: Final = Path(__file__).resolve().parent / "pins.toml"
SCHEMA: Final = 1  # bump when the stamp or manifest layout changes, so old caches rebuild
BIN_ENV: Final = "EDGEFM_LAB_BIN"
CACHE_ENV: Final = "EDGEFM_LAB_CACHE"


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser()
    return cache_root() / "lab"


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
        raise BuildError("pins", f"{path}: cannot read the lab pins: {exc}") from None
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
        raise BuildError("pins", f"{path}: missing or malformed entry {exc}") from None
    return Pins(sources, stages, crds)


# -------------------------------------------------------------------------------------------- helpers


class Progress:
    """One line per step, with seconds since the start, on stderr (stdout stays for --status)."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, step: str, message: str) -> None:
        print(f"{time.monotonic() - self.started:7.1f}s {step:<24} {message}", file=sys.stderr, flush=True)


def module_dir(go: Go, module: str, version: str) -> Path:
    """Downloads `module@version` through the module proxy (or finds it in GOMODCACHE) and returns its dir."""
    info = go.download(f"{module}@{version}", step=module)
    if info is None:
        raise BuildError(module, f"the Go module proxy does not serve {module}@{version} (tools/lab/pins.toml)")
    return Path(info["Dir"])


def staging_replaces(kubernetes_dir: Path, staging_version: str) -> list[str]:
    """`go mod edit` flags pointing every `k8s.io/<x> => ./staging/...` replace of kubernetes' own go.mod at the
    published release of that staging module."""
    out: list[str] = []
    for line in (kubernetes_dir / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "=>" and parts[2].startswith("./staging/"):
            out.append(f"-replace={parts[0]}={parts[0]}@{staging_version}")
    if not out:
        raise BuildError("kubernetes", f"{kubernetes_dir}/go.mod lists no staging modules")
    return out


def build_binary(go: Go, cache: Path, src: GoSource, name: str, log: Path) -> None:
    """Builds one binary through a wrapper module (exact requirement, tidied, checked) into cache/bin."""
    work = cache / "build" / src.key
    edits: list[str] = []
    if src.staging_version:
        edits = staging_replaces(module_dir(go, src.module, src.version), src.staging_version)
    # The wrapper is made (and tidied: that resolves the whole graph) once per pin; the build cache makes the
    # builds after it cheap.
    if not _wrapper_current(work, src, edits):
        write_wrapper(work, src.binaries[name])
        # Every binary of the source is imported, so tidy keeps the dependencies of all of them.
        (work / "tools.go").write_text(
            "//go:build tools\n\npackage tools\n\nimport (\n"
            + "".join(f'\t_ "{pkg}"\n' for pkg in sorted(src.binaries.values()))
            + ")\n"
        )
        requires = [f"{src.module}@{src.version}"]
        make_wrapper(go, work, name=f"lab-{src.key}", requires=requires, edits=edits, step=name, log=log)
        (work / ".pins").write_text(_wrapper_key(src, edits))
    flags = " ".join(["-s", "-w", *(f"-X {x}" for x in src.ldflags_x)])
    out = work / "out" / name
    go("build", "-trimpath", "-ldflags", flags, "-o", str(out), src.binaries[name], step=name, cwd=work, log=log)
    install_file(out, cache / "bin" / name)


def _wrapper_key(src: GoSource, edits: Sequence[str]) -> str:
    return json.dumps({"module": src.module, "version": src.version, "edits": list(edits), "schema": SCHEMA})


def _wrapper_current(work: Path, src: GoSource, edits: Sequence[str]) -> bool:
    try:
        return (work / ".pins").read_text() == _wrapper_key(src, edits) and (work / "go.sum").is_file()
    except OSError:
        return False


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
        go = Go(cache / "gocache", cache / "build")
        choices = choose(pins, cache, env)
        if given:
            missing = [c.name for c in choices if c.origin == "missing"]
            if missing:
                raise BuildError(BIN_ENV, f"{given} lacks executable {', '.join(missing)}")
        sources = pins.binaries()
        for choice in choices:
            if choice.origin != "missing":
                progress(choice.name, f"ready: {choice.path} ({choice.origin})")
                continue
            src = sources[choice.name]
            log = logs / f"{choice.name}.log"
            log.write_text("")
            package = src.binaries[choice.name]
            progress(choice.name, f"building {package} from {src.module}@{src.version} (log: {log}) …")
            started = time.monotonic()
            build_binary(go, cache, src, choice.name, log)
            _write_stamp(cache, choice.name, _wanted(src, choice.name))
            progress(choice.name, f"built in {time.monotonic() - started:.0f}s")
        stages = _copy_files(go, pins.stages, cache / "stages")
        progress("kwok stages", f"{len(stages)} from {pins.stages.module}@{pins.stages.version}")
        crds: list[str] = []
        for src_files in pins.crds:
            crds += _copy_files(go, src_files, cache / "crds")
            progress("crds", f"{len(src_files.files)} from {src_files.module}@{src_files.version}")
        final = choose(pins, cache, env)
        manifest = {
            "schema": SCHEMA,
            "binaries": {c.name: str(c.path) for c in final},
            "origins": {c.name: c.origin for c in final},
            "versions": {s.key: f"{s.module}@{s.version}" for s in pins.sources},
            "stages": stages,
            "crds": crds,
        }
        (cache / "lab.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        progress("manifest", str(cache / "lab.json"))
        return manifest


def _copy_files(go: Go, src: FileSource, dest: Path) -> list[str]:
    """Copies files out of a module, under <dest>/<module path>@<version>/<file name>; returns their paths."""
    target = dest / f"{src.module.replace('/', '_')}@{src.version}"
    wanted = [target / Path(f).name for f in src.files]
    if not all(p.is_file() for p in wanted):
        root = module_dir(go, src.module, src.version)
        target.mkdir(parents=True, exist_ok=True)
        for rel, out in zip(src.files, wanted, strict=True):
            if not (root / rel).is_file():
                raise BuildError(src.module, f"{src.module}@{src.version} has no file {rel} (tools/lab/pins.toml)")
            shutil.copyfile(root / rel, out)
            out.chmod(0o644)  # the module cache is read-only; the copy need not be
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
    parser = argparse.ArgumentParser(prog="python -m tools.lab.build", description=__doc__.splitlines()[0])
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
        if exc.tail:
            print(exc.tail, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
