"""`make tools`: provide the Pulumi engine (CLI, Python language host, provider plugins) for edgefm.

Run as ``python -m tools.engine.build``. A compatible ``pulumi`` already on PATH, with the plugins the pinned
SDKs need, is used as it is. Otherwise everything is built from Go modules through the Go module proxy into
a cache outside the repository (``$EDGEFM_TOOLCHAIN_DIR``, default
``${XDG_CACHE_HOME:-~/.cache}/edgefm/toolchain``):

    bin/           pulumi, pulumi-language-python, pulumi-language-python-exec
    pulumi-home/   PULUMI_HOME: the plugin cache holding the providers under the SDKs' exact versions
    build/         wrapper Go modules and build logs (scratch)
    gocache/       GOCACHE (scratch; GOMODCACHE stays Go's default so downloads are shared)
    stamps/        one JSON stamp per artefact: what was built, for which SDK version
    toolchain.json the manifest edgefm.ops.engine reads

Versions come from the venv: the ``pulumi`` distribution for the CLI and language host, each provider SDK's
``pulumi-plugin.json`` for the providers. Which Go module version builds each of them is pinned in
``tools/engine/sources.toml``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.markup import escape

from edgefm.ops.engine import (
    LANGUAGE_HOST,
    PROVIDER_SDKS,
    SCHEMA,
    ArtefactStatus,
    EngineNotReady,
    Manifest,
    SdkPins,
    load_manifest,
    read_sdk_pins,
    toolchain_dir,
)
from tools.gobuild import (
    BuildError,
    Go,
    go_build,
    install_file,
    locked,
    make_wrapper,
    make_writable,
    run_tool,
    write_wrapper,
)

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
SOURCES_FILE: Final = REPO_ROOT / "tools" / "engine" / "sources.toml"

CLI: Final = "cli"
DYNAMIC_PROVIDER: Final = "pulumi-resource-pulumi-python"
PULUMI_SDK_MODULE: Final = "github.com/pulumi/pulumi/sdk/v3"
PULUMI_VERSION_VAR: Final = "github.com/pulumi/pulumi/sdk/v3/go/common/version.Version"


# --------------------------------------------------------------------------------------------- versions


def parse_semver(text: str) -> tuple[int, int, int]:
    """`v3.274.1` or `3.274.1-alpha.x` -> (3, 274, 1); pre-release and build parts are ignored."""
    core = text.strip().removeprefix("v").split("-", 1)[0].split("+", 1)[0]
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a semantic version: {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def cli_is_compatible(cli_version: str, sdk_version: str) -> bool:
    """Same major as the SDK, and the same minor or newer: a newer CLI serves older SDKs."""
    try:
        cli, sdk = parse_semver(cli_version), parse_semver(sdk_version)
    except ValueError:
        return False
    return cli[0] == sdk[0] and cli[1] >= sdk[1]


# ---------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Candidate:
    """One exact Go module version that can build an artefact."""

    module: str
    version: str
    package: str | None = None  # Go package of the binary; each artefact kind has a default
    release: str | None = None  # release the source is (stamped into the binary); default: version's tag
    requires: tuple[str, ...] = ()  # extra exact `module@version` requirements of the wrapper module
    substitute: str | None = None  # set when this is not the release the SDK asks for, saying why

    @property
    def ref(self) -> str:
        return f"{self.module}@{self.version}"

    def release_version(self) -> str:
        """The release without a leading v, e.g. 4.25.0; pseudo-versions must name it explicitly."""
        if self.release:
            return self.release
        if self.version.count("-") >= 2 and self.version.split("-")[-1].isalnum():
            raise BuildError("sources", f"{self.ref} is a pseudo-version: give it `release = ...`")
        return self.version.removeprefix("v")

    def as_json(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "version": self.version,
            "package": self.package,
            "release": self.release,
            "requires": list(self.requires),
            "substitute": self.substitute,
        }


@dataclass(frozen=True)
class ArtefactSource:
    """The sources.toml entry for one artefact at the version the SDK asks for."""

    name: str
    wanted: str
    candidates: tuple[Candidate, ...]
    unavailable: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)


def _candidate(raw: Mapping[str, Any], where: str) -> Candidate:
    known = {"module", "version", "package", "release", "requires", "substitute"}
    if unknown := set(raw) - known:
        raise BuildError("sources", f"{where}: unknown keys {sorted(unknown)}")
    try:
        module, version = str(raw["module"]), str(raw["version"])
    except KeyError as exc:
        raise BuildError("sources", f"{where}: a candidate needs module and version") from exc
    requires = tuple(str(r) for r in raw.get("requires", ()))
    for req in requires:
        if "@" not in req:
            raise BuildError("sources", f"{where}: requirement {req!r} is not module@version")
    return Candidate(
        module=module,
        version=version,
        package=raw.get("package"),
        release=raw.get("release"),
        requires=requires,
        substitute=raw.get("substitute"),
    )


def load_sources(pins: SdkPins, path: Path = SOURCES_FILE) -> dict[str, ArtefactSource]:
    """The source entries for exactly the versions in `pins`; a missing entry is an error, not a guess."""
    data = tomllib.loads(path.read_text())
    wanted = {CLI: pins.pulumi, LANGUAGE_HOST: pins.pulumi, **pins.plugins}
    sources: dict[str, ArtefactSource] = {}
    for name, version in wanted.items():
        entry = data.get(name, {}).get(version)
        if entry is None:
            raise BuildError(
                "sources",
                f'{path} has no [{name}."{version}"] entry for the version the SDK pins; '
                "add the exact Go module version to build",
            )
        where = f'[{name}."{version}"]'
        candidates = tuple(_candidate(c, where) for c in entry.get("candidates", ()))
        unavailable = entry.get("unavailable")
        if not candidates and not unavailable:
            raise BuildError("sources", f"{where}: no candidates and no `unavailable` reason")
        options = {k: str(v) for k, v in entry.items() if k not in {"candidates", "unavailable"}}
        sources[name] = ArtefactSource(name, version, candidates, unavailable, options)
    return sources


# ----------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def pulumi_home(self) -> Path:
        return self.root / "pulumi-home"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def gocache(self) -> Path:
        return self.root / "gocache"

    @property
    def stamps_dir(self) -> Path:
        return self.root / "stamps"

    @property
    def manifest_path(self) -> Path:
        return self.root / "toolchain.json"

    @property
    def pulumi(self) -> Path:
        return self.bin_dir / "pulumi"

    def stamp_path(self, name: str) -> Path:
        return self.stamps_dir / f"{name}.json"


# --------------------------------------------------------------------------------------------- manifest


# ------------------------------------------------------------------------------------------- processes


class Progress:
    """One line per step, each prefixed with the seconds since the bootstrap started."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def line(self, step: str, message: str, style: str = "") -> None:
        text = f"[dim]{self.elapsed():7.1f}s[/dim] [bold]{step:<16}[/bold] "
        body = escape(message)
        line = text + (f"[{style}]{body}[/{style}]" if style else body)
        self.console.print(line, highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------------- build primitives


@dataclass(frozen=True)
class ProviderRecipe:
    """How to build one provider plugin from its module (defaults; a candidate may override the package)."""

    binary: str
    package_suffix: str  # below the module path
    version_var_suffix: str  # below the module path, for -X
    generate_dir: str | None = None  # run `VERSION=<release> go run generate.go` here in a writable copy


PROVIDER_RECIPES: Final[Mapping[str, ProviderRecipe]] = {
    "kubernetes": ProviderRecipe(
        binary="pulumi-resource-kubernetes",
        package_suffix="cmd/pulumi-resource-kubernetes",
        version_var_suffix="pkg/version.Version",
        # main.go embeds schema-embed.json and terraform-mapping-embed.json, generated, not in the module.
        generate_dir="cmd/pulumi-resource-kubernetes",
    ),
    "command": ProviderRecipe(
        binary="pulumi-resource-command",
        package_suffix="cmd/pulumi-resource-command",
        version_var_suffix="pkg/version.Version",
    ),
}


# ----------------------------------------------------------------------------------------------- builder


class Builder:
    def __init__(self, layout: Layout, progress: Progress, sources: Mapping[str, ArtefactSource]) -> None:
        self.layout = layout
        self.progress = progress
        self.sources = sources
        self._go: Go | None = None

    @property
    def go(self) -> Go:
        if self._go is None:  # only a build needs Go; warm runs never start it
            self._go = Go(self.layout.gocache, self.layout.build_dir)
        return self._go

    # -- stamps

    def stamped(self, name: str) -> tuple[Candidate | None, bool]:
        """(candidate the stamp records, if for the wanted version and still listed; whether it is current).

        Current means the candidates listed ahead of it are the same ones the bootstrap found unavailable
        when it chose it: adding a better candidate to sources.toml makes the stamp stale.
        """
        src = self.sources[name]
        try:
            stamp = json.loads(self.layout.stamp_path(name).read_text())
        except (OSError, ValueError):
            return None, False
        if stamp.get("schema") != SCHEMA or stamp.get("wanted") != src.wanted:
            return None, False
        for idx, cand in enumerate(src.candidates):
            if cand.as_json() == stamp.get("candidate"):
                return cand, stamp.get("ahead") == [c.as_json() for c in src.candidates[:idx]]
        return None, False

    def write_stamp(self, name: str, cand: Candidate, seconds: float) -> None:
        src = self.sources[name]
        path = self.layout.stamp_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = {
            "schema": SCHEMA,
            "wanted": src.wanted,
            "candidate": cand.as_json(),
            # The candidates the proxy did not serve when this one was chosen (see `stamped`).
            "ahead": [c.as_json() for c in src.candidates[: src.candidates.index(cand)]],
            "go": self.go.version(),
            "seconds": round(seconds, 1),
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        path.write_text(json.dumps(stamp, indent=2) + "\n")

    def choose(self, name: str) -> tuple[Candidate, dict[str, Any]]:
        """The first candidate the module proxy serves, with its `go mod download` info."""
        src = self.sources[name]
        refused: list[str] = []
        for cand in src.candidates:
            info = self.go.download(cand.ref, name)
            if info is not None:
                return cand, info
            refused.append(cand.ref)
        raise BuildError(name, "the Go module proxy serves none of: " + ", ".join(refused))

    # -- artefacts

    def built(self, name: str, cand: Candidate) -> bool:
        """Whether the outputs of building `cand` are in place (for providers: the built binary)."""
        if name == CLI:
            if not os.access(self.layout.pulumi, os.X_OK):
                return False
            out = subprocess.run(
                [str(self.layout.pulumi), "version"],
                capture_output=True,
                text=True,
                env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"},
                check=False,
            )
            return out.stdout.strip() == f"v{cand.release_version()}"
        if name == LANGUAGE_HOST:
            host = self.layout.bin_dir / "pulumi-language-python"
            script = self.layout.bin_dir / "pulumi-language-python-exec"
            return os.access(host, os.X_OK) and os.access(script, os.X_OK)
        return name in PROVIDER_RECIPES and self.provider_binary(name).is_file()

    def build(self, name: str, cand: Candidate, info: Mapping[str, Any]) -> None:
        if name == CLI:
            self.build_cli(cand, info)
        elif name == LANGUAGE_HOST:
            self.build_language_host(cand, info)
        else:
            self.build_provider(name, cand, info)

    def log_for(self, name: str) -> Path:
        """One log per artefact, outside the work directories that each build starts afresh."""
        return self.layout.build_dir / f"{name}.log"

    def start_log(self, name: str) -> Path:
        log = self.log_for(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        return log

    def build_cli(self, cand: Candidate, info: Mapping[str, Any]) -> None:
        step = CLI
        log = self.start_log(step)
        package = cand.package or "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
        work = self.layout.build_dir / step
        self.progress.line(step, f"building {package} from {cand.ref} (log: {log}) …")
        edits, _local = self.go.replaces(Path(info["GoMod"]), step)  # drops pkg's `sdk/v3 => ../sdk`
        write_wrapper(work, package)
        requires = [cand.ref, f"{PULUMI_SDK_MODULE}@{cand.version}", *cand.requires]
        make_wrapper(self.go, work, name=step, requires=requires, edits=edits, step=step, log=log)
        out = work / "out" / "pulumi"
        release = f"v{cand.release_version()}"
        go_build(
            self.go,
            work,
            package=package,
            output=out,
            version_var=PULUMI_VERSION_VAR,
            version=release,
            step=step,
            log=log,
        )
        install_file(out, self.layout.pulumi)

    def build_language_host(self, cand: Candidate, info: Mapping[str, Any]) -> None:
        step = LANGUAGE_HOST
        log = self.start_log(step)
        src = self.sources[step]
        package = cand.package or "github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3"
        work = self.layout.build_dir / step
        self.progress.line(step, f"building {package} from {cand.ref} (log: {log}) …")
        edits, _local = self.go.replaces(Path(info["GoMod"]), step)
        write_wrapper(work, package)
        make_wrapper(self.go, work, name=step, requires=[cand.ref, *cand.requires], edits=edits, step=step, log=log)
        out = work / "out" / "pulumi-language-python"
        release = f"v{cand.release_version()}"
        go_build(
            self.go,
            work,
            package=package,
            output=out,
            version_var=PULUMI_VERSION_VAR,
            version=release,
            step=step,
            log=log,
        )
        # The host runs programs through this script, which it looks for next to its own binary.
        script_ref = f"{src.options['exec_script_module']}@{src.options['exec_script_version']}"
        script_info = self.go.download(script_ref, step)
        if script_info is None:
            raise BuildError(step, f"the Go module proxy does not serve {script_ref} (for the exec script)")
        script = Path(script_info["Dir"]) / src.options["exec_script_path"]
        if not script.is_file():
            raise BuildError(step, f"{script_ref} has no {src.options['exec_script_path']}")
        install_file(out, self.layout.bin_dir / "pulumi-language-python")
        install_file(script, self.layout.bin_dir / "pulumi-language-python-exec")

    def ensure_dynamic_provider(self) -> str:
        """The script that serves Python dynamic providers (`pulumi-resource-pulumi-python`), from sdk/v3 at
        the SDK's own version, beside the CLI: edgefm generates its secrets and site CAs with them."""
        step = "dynamic-provider"
        target = self.layout.bin_dir / DYNAMIC_PROVIDER
        src = self.sources[LANGUAGE_HOST]
        ref = f"{src.options['exec_script_module']}@{src.options['exec_script_version']}"
        if target.is_file():
            return ref
        info = self.go.download(ref, step)
        if info is None:
            raise BuildError(step, f"the Go module proxy does not serve {ref} (for {DYNAMIC_PROVIDER})")
        script = Path(info["Dir"]) / "python" / "dist" / DYNAMIC_PROVIDER
        if not script.is_file():
            raise BuildError(step, f"{ref} has no python/dist/{DYNAMIC_PROVIDER}")
        install_file(script, target)
        return ref

    def provider_binary(self, name: str) -> Path:
        return self.layout.build_dir / name / "out" / PROVIDER_RECIPES[name].binary

    def build_provider(self, name: str, cand: Candidate, info: Mapping[str, Any]) -> None:
        step = name
        recipe = PROVIDER_RECIPES.get(name)
        if recipe is None:
            raise BuildError(step, f"no build recipe for provider {name!r} in tools.engine.build")
        log = self.start_log(step)
        package = cand.package or f"{cand.module}/{recipe.package_suffix}"
        release = cand.release_version()
        work = self.layout.build_dir / name
        self.progress.line(step, f"building {package} from {cand.ref}, release {release} (log: {log}) …")
        if work.exists():
            make_writable(work)
            shutil.rmtree(work)
        edits, local = self.go.replaces(Path(info["GoMod"]), step)
        wrapper = work / "wrapper"
        write_wrapper(wrapper, package)
        if recipe.generate_dir is not None:
            # Generated files need a writable copy of the module, which the wrapper then builds via a replace.
            copy = work / "src"
            shutil.copytree(info["Dir"], copy, symlinks=True)
            make_writable(copy)
            if local:  # e.g. `sdk/v4 => ../sdk`: no such directory in a module copy; the wrapper pins it
                self.go("mod", "edit", *(f"-dropreplace={p}" for p in local), step=step, cwd=copy, log=log)
            self.progress.line(step, f"generating embedded files: VERSION={release} go run generate.go")
            gen_dir = copy / recipe.generate_dir
            self.go("run", "generate.go", step=step, cwd=gen_dir, log=log, env={"VERSION": release})
            edits = [*edits, f"-replace={cand.module}=../src"]
        requires = [cand.ref, *cand.requires]
        make_wrapper(self.go, wrapper, name=name, requires=requires, edits=edits, step=step, log=log)
        go_build(
            self.go,
            wrapper,
            package=package,
            output=self.provider_binary(name),
            version_var=f"{cand.module}/{recipe.version_var_suffix}",
            version=release,
            step=step,
            log=log,
        )

    def install_plugin(self, name: str, env: Mapping[str, str]) -> None:
        """Install the built binary into the plugin cache under exactly the version the SDK asks for."""
        wanted = self.sources[name].wanted
        binary = self.provider_binary(name)
        args = ["plugin", "install", "resource", name, wanted, "--file", str(binary), "--reinstall"]
        run_tool([str(self.layout.pulumi), *args], step=f"{name} install", env=env, log=self.log_for(name))


def installed_plugins(pulumi: Path, env: Mapping[str, str], step: str) -> dict[str, set[str]]:
    """Resource plugins in the plugin cache: name -> versions."""
    out = run_tool([str(pulumi), "plugin", "ls", "--json"], step=step, env=env)
    found: dict[str, set[str]] = {}
    for plugin in json.loads(out or "[]") or []:
        if plugin.get("kind") == "resource" and plugin.get("version"):
            found.setdefault(plugin["name"], set()).add(str(plugin["version"]).removeprefix("v"))
    return found


def pulumi_env(layout: Layout) -> dict[str, str]:
    """Environment for running the built CLI during the bootstrap: our PULUMI_HOME, offline."""
    return {
        **os.environ,
        "PATH": f"{layout.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(layout.pulumi_home),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    }


# ------------------------------------------------------------------------------------------ system mode


def find_system_engine(pins: SdkPins, layout: Layout, progress: Progress) -> Manifest | None:
    """A pulumi already on PATH that is new enough and has the language host and the exact plugins."""
    ours = str(layout.bin_dir)
    search = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != ours)
    found = shutil.which("pulumi", path=search)
    if found is None:
        progress.line("system", "no pulumi on PATH: building from Go modules")
        return None
    pulumi = Path(found).resolve()
    env = {**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    proc = subprocess.run([str(pulumi), "version"], capture_output=True, text=True, env=env, check=False)
    version = proc.stdout.strip()
    if proc.returncode != 0 or not cli_is_compatible(version, pins.pulumi):
        progress.line("system", f"{pulumi} is {version or 'unusable'}, need {pins.pulumi} or newer: not used")
        return None
    host = shutil.which("pulumi-language-python", path=search) or (
        str(pulumi.parent / "pulumi-language-python") if (pulumi.parent / "pulumi-language-python").exists() else None
    )
    if host is None:
        progress.line("system", f"{pulumi} {version} has no pulumi-language-python: not used")
        return None
    try:
        plugins = installed_plugins(pulumi, env, "system")
    except BuildError:
        return None
    missing = [f"{n} {v}" for n, v in pins.plugins.items() if v not in plugins.get(n, set())]
    if missing:
        progress.line("system", f"{pulumi} {version} lacks plugins {', '.join(missing)}: not used")
        return None
    progress.line("system", f"using {pulumi} {version} with its installed plugins; nothing to build", "green")
    home = os.environ.get("PULUMI_HOME")
    return Manifest(
        mode="system",
        bin_dir=pulumi.parent,
        pulumi=pulumi,
        pulumi_home=Path(home) if home else None,
        cli_version=version,
        sdk=pins,
        artefacts={
            CLI: ArtefactStatus(wanted=pins.pulumi, status="ready", built_from=str(pulumi)),
            LANGUAGE_HOST: ArtefactStatus(wanted=pins.pulumi, status="ready", built_from=host),
            **{n: ArtefactStatus(wanted=v, status="ready", built_from="installed") for n, v in pins.plugins.items()},
        },
    )


# ------------------------------------------------------------------------------------------ entry points


def ensure_toolchain(
    *,
    console: Console | None = None,
    rebuild: Sequence[str] = (),
    use_system: bool = True,
    layout: Layout | None = None,
    sources_file: Path = SOURCES_FILE,
) -> Manifest:
    """Make the engine available (building what is missing or stale) and return its manifest."""
    layout = layout or Layout(toolchain_dir())
    progress = Progress(console or Console(highlight=False))
    try:
        pins = read_sdk_pins()
    except EngineNotReady as exc:
        raise BuildError("sdk", str(exc)) from exc
    plugin_list = ", ".join(f"{n} {v}" for n, v in pins.plugins.items())
    progress.line("sdk", f"pulumi {pins.pulumi}; plugins {plugin_list}; cache {layout.root}")
    with locked(layout.root):
        if use_system and not rebuild:
            system = find_system_engine(pins, layout, progress)
            if system is not None:
                _write_manifest(layout, system)
                return system
        sources = load_sources(pins, sources_file)
        builder = Builder(layout, progress, sources)
        statuses: dict[str, ArtefactStatus] = {}

        progress.line("dynamic-provider", f"ready: {DYNAMIC_PROVIDER} from {builder.ensure_dynamic_provider()}")

        env = pulumi_env(layout)
        installed: dict[str, set[str]] = {}
        for name in (CLI, LANGUAGE_HOST, *pins.plugins):
            src = sources[name]
            provider = name in pins.plugins
            if src.unavailable and not src.candidates:
                statuses[name] = ArtefactStatus(wanted=src.wanted, status="unavailable", reason=src.unavailable)
                progress.line(name, f"NOT BUILT: {src.unavailable}", "yellow")
                continue
            if provider and not installed:  # the CLI is ready by now; ask it once
                installed = installed_plugins(layout.pulumi, env, "plugins")
            in_cache = src.wanted in installed.get(name, set())
            stamped, current = builder.stamped(name)
            if name in rebuild:
                stamped, current = None, False
            if stamped is not None and current and (in_cache if provider else builder.built(name, stamped)):
                cand = stamped
                progress.line(name, f"up to date: {cand.ref}")
            else:
                t = time.monotonic()
                cand, info = builder.choose(name)  # the first candidate the proxy serves
                if cand == stamped and builder.built(name, cand):
                    progress.line(name, f"still the best source the proxy serves: {cand.ref}; not rebuilt")
                else:
                    builder.build(name, cand, info)
                    progress.line(name, f"built from {cand.ref} in {time.monotonic() - t:.1f}s", "green")
                if provider:
                    builder.install_plugin(name, env)
                    progress.line(name, f"installed into the plugin cache as {name} {src.wanted}", "green")
                builder.write_stamp(name, cand, time.monotonic() - t)
            statuses[name] = ArtefactStatus(
                wanted=src.wanted, status="ready", built_from=cand.ref, substitute=cand.substitute
            )
            if cand.substitute:
                progress.line(name, f"SUBSTITUTE: {cand.substitute}", "yellow")

        cli_cand, _ = builder.stamped(CLI)
        manifest = Manifest(
            mode="built",
            bin_dir=layout.bin_dir,
            pulumi=layout.pulumi,
            pulumi_home=layout.pulumi_home,
            cli_version=f"v{cli_cand.release_version()}" if cli_cand else "unknown",
            sdk=pins,
            artefacts=statuses,
        )
        _write_manifest(layout, manifest)
        progress.line("done", f"engine ready in {progress.elapsed():.1f}s: {manifest.pulumi} {manifest.cli_version}")
        return manifest


def _write_manifest(layout: Layout, manifest: Manifest) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    tmp = layout.manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    tmp.replace(layout.manifest_path)


def prune(layout: Layout) -> None:
    """Drop build scratch (GOCACHE, wrapper modules); the next rebuild of anything is then cold."""
    for path in (layout.gocache, layout.build_dir):
        if path.exists():
            make_writable(path)
            shutil.rmtree(path)


def _du(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        with contextlib.suppress(OSError):
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.engine.build", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rebuild",
        nargs="*",
        metavar="ARTEFACT",
        help=f"rebuild these (default: all of {CLI}, {LANGUAGE_HOST}, and the providers) even if stamped",
    )
    parser.add_argument("--no-system", action="store_true", help="ignore a pulumi on PATH; use the built engine")
    parser.add_argument("--strict", action="store_true", help="fail if anything is a substitute or unavailable")
    parser.add_argument("--status", action="store_true", help="print the manifest and cache size; build nothing")
    parser.add_argument("--prune", action="store_true", help="after a successful run, delete GOCACHE and build/")
    parser.add_argument("--sources", type=Path, default=SOURCES_FILE, help="Go module sources (%(default)s)")
    args = parser.parse_args(argv)
    console = Console(highlight=False)
    layout = Layout(toolchain_dir())

    if args.status:
        manifest = load_manifest(layout.manifest_path)
        if manifest is None:
            console.print(f"no toolchain at {layout.root}; run `make tools`")
            return 1
        console.print_json(data=manifest.to_json())
        sizes = {p.name: _du(p) for p in sorted(layout.root.iterdir()) if p.is_dir()}
        console.print(", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in sizes.items()))
        return 0

    rebuild: tuple[str, ...] = ()
    if args.rebuild is not None:
        rebuild = tuple(args.rebuild) or (CLI, LANGUAGE_HOST, *PROVIDER_SDKS)
    try:
        manifest = ensure_toolchain(
            console=console,
            rebuild=rebuild,
            use_system=not args.no_system,
            layout=layout,
            sources_file=args.sources,
        )
    except BuildError as exc:
        console.print(
            f"[bold red]make tools failed at step {escape(exc.step)}:[/] {escape(exc.message)}",
            soft_wrap=True,
        )
        if exc.tail:
            console.print(f"[dim]--- last lines of output ---[/dim]\n{escape(exc.tail)}", soft_wrap=True)
        return 1
    if args.prune:
        prune(layout)
    problems = [f"{n}: {a.substitute or a.reason}" for n, a in manifest.artefacts.items() if a.substitute or a.reason]
    if problems:
        listing = "\n  ".join(escape(p) for p in problems)
        console.print(f"[yellow]not exactly as pinned:[/yellow]\n  {listing}", soft_wrap=True)
        if args.strict:
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
