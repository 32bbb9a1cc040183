"""The environment for running the Pulumi engine offline and hermetically.

Everything here reads the manifest that ``make tools`` (``python -m tools.engine.build``) writes: the engine's
paths and versions. This module is the whole interface between the product and the builder; the builder
imports the manifest types from here, never the other way round.

- ``engine_overrides()``: only the variables edgefm sets, for ``LocalWorkspaceOptions.env_vars`` (the
  Automation API lays them over ``os.environ``).
- ``engine_env()``: a complete environment for ``subprocess`` (``os.environ`` plus the overrides, minus
  tracing variables).
- ``pulumi_command()`` / ``workspace_options()``: the Automation API pointed at the toolchain's CLI.

Backend and passphrase: an explicit argument wins, then ``EDGEFM_BACKEND_URL`` / ``EDGEFM_CONFIG_PASSPHRASE``,
then the defaults. Generic ``PULUMI_BACKEND_URL`` / ``PULUMI_CONFIG_PASSPHRASE`` from the caller's shell are
deliberately not used: they usually belong to another project, and a cloud backend URL would take the engine
off the machine.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pulumi import automation as auto
from semver import VersionInfo

REPO_ROOT: Final = Path(__file__).resolve().parents[2]

# Provider SDKs whose plugins the engine must load, by plugin name. pulumi-aws is left out on purpose: its
# provider module replaces a local ../upstream checkout that no module proxy serves, so it cannot be built.
PROVIDER_SDKS: Final[Mapping[str, str]] = {"kubernetes": "pulumi_kubernetes", "command": "pulumi_command"}
LANGUAGE_HOST: Final = "language-python"
SCHEMA: Final = 1  # bump when the stamp or manifest layout changes, so old caches rebuild

DEFAULT_PASSPHRASE: Final = "edgefm-local-only"


def config_passphrase(passphrase: str | None = None) -> str:
    """The passphrase that opens the stacks' `secure:` values: an explicit one, EDGEFM_CONFIG_PASSPHRASE, or the
    local default."""
    return passphrase or os.environ.get("EDGEFM_CONFIG_PASSPHRASE") or DEFAULT_PASSPHRASE


"""Passphrase of the file backend's secrets provider, FOR LOCAL USE ONLY (development, tests, demos).

It is public, so secrets encrypted with it are readable by anyone who has the state files. Stacks whose state
leaves the machine must set ``EDGEFM_CONFIG_PASSPHRASE`` (or pass ``passphrase=``) or use a KMS secrets
provider."""

# Tracing switches the Python SDK and the CLI read (OTLP export): kept off so no telemetry leaves the machine.
TRACING_VARS: Final = (
    "TRACEPARENT",
    "PULUMI_OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "PULUMI_TRACING",
)


class EngineNotReady(RuntimeError):
    """The toolchain manifest is missing: `make tools` has not run for this cache."""


@dataclass(frozen=True)
class SdkPins:
    """What the Python SDKs in this interpreter's environment need from the engine."""

    pulumi: str
    plugins: Mapping[str, str]


def read_sdk_pins() -> SdkPins:
    """Read the versions from the installed SDKs (without importing them: pulumi_kubernetes takes seconds)."""
    try:
        pulumi_version = importlib.metadata.version("pulumi")
    except importlib.metadata.PackageNotFoundError as exc:
        raise EngineNotReady("the `pulumi` Python SDK is not installed in this environment") from exc
    plugins: dict[str, str] = {}
    for name, package in PROVIDER_SDKS.items():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise EngineNotReady(f"the `{package}` Python SDK is not installed in this environment")
        meta_path = Path(next(iter(spec.submodule_search_locations))) / "pulumi-plugin.json"
        meta = json.loads(meta_path.read_text())
        if meta.get("name") != name or not isinstance(meta.get("version"), str):
            raise EngineNotReady(f"{meta_path} does not name plugin {name!r} with a version")
        plugins[name] = meta["version"]
    return SdkPins(pulumi=pulumi_version, plugins=plugins)


def toolchain_dir() -> Path:
    """`$EDGEFM_TOOLCHAIN_DIR`, else `${XDG_CACHE_HOME:-~/.cache}/edgefm/toolchain`: never in the repo."""
    if override := os.environ.get("EDGEFM_TOOLCHAIN_DIR"):
        return Path(override).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(cache).expanduser() / "edgefm" / "toolchain").resolve()


@dataclass(frozen=True)
class ArtefactStatus:
    wanted: str
    status: str  # "ready" or "unavailable"
    built_from: str | None = None
    substitute: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Manifest:
    """What `ensure_toolchain` provided; edgefm.ops.engine builds the engine environment from it."""

    mode: str  # "built" (from Go modules into the cache) or "system" (a pulumi already on PATH)
    bin_dir: Path
    pulumi: Path
    pulumi_home: Path | None  # None: the system install's own (PULUMI_HOME or ~/.pulumi) is used
    cli_version: str
    sdk: SdkPins
    artefacts: Mapping[str, ArtefactStatus]

    def has_plugin(self, name: str) -> bool:
        status = self.artefacts.get(name)
        return status is not None and status.status == "ready"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "mode": self.mode,
            "bin_dir": str(self.bin_dir),
            "pulumi": str(self.pulumi),
            "pulumi_home": str(self.pulumi_home) if self.pulumi_home else None,
            "cli_version": self.cli_version,
            "sdk": {"pulumi": self.sdk.pulumi, "plugins": dict(self.sdk.plugins)},
            "artefacts": {
                name: {k: v for k, v in vars(a).items() if v is not None} for name, a in self.artefacts.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        home = data.get("pulumi_home")
        return cls(
            mode=str(data["mode"]),
            bin_dir=Path(data["bin_dir"]),
            pulumi=Path(data["pulumi"]),
            pulumi_home=Path(home) if home else None,
            cli_version=str(data["cli_version"]),
            sdk=SdkPins(pulumi=data["sdk"]["pulumi"], plugins=dict(data["sdk"]["plugins"])),
            artefacts={name: ArtefactStatus(**a) for name, a in data["artefacts"].items()},
        )


def manifest_path(root: Path | None = None) -> Path:
    """Where the builder writes the manifest: `toolchain.json` at the root of the engine cache."""
    return (root or toolchain_dir()) / "toolchain.json"


def load_manifest(path: Path | None = None) -> Manifest | None:
    """The manifest of the last successful bootstrap; None if there is none or it has an old schema."""
    path = path or manifest_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("schema") != SCHEMA:
        return None
    return Manifest.from_json(data)


def require_manifest() -> Manifest:
    """The toolchain manifest, checked against the SDKs installed now (a bumped SDK needs `make tools`)."""
    manifest = load_manifest()
    if manifest is None:
        raise EngineNotReady("the Pulumi engine is not set up: run `make tools`")
    pins = read_sdk_pins()
    if pins != manifest.sdk:
        raise EngineNotReady(
            f"the engine was set up for {manifest.sdk}, but the installed SDKs need {pins}: run `make tools`"
        )
    return manifest


def default_backend_url(repo: Path = REPO_ROOT) -> str:
    """`file://<repo>/.state/backend` (git-ignored); the directory is created so the engine can lock in it."""
    state = repo / ".state" / "backend"
    state.mkdir(parents=True, exist_ok=True)
    return state.resolve().as_uri()


def project_python(repo: Path = REPO_ROOT) -> Path:
    """The interpreter Pulumi.yaml programs run with: the repo's .venv, else the one running edgefm."""
    venv_python = repo / ".venv" / "bin" / "python"
    # Not resolved: a venv's python must be started through its venv path to see the venv's packages.
    return venv_python if venv_python.exists() else Path(sys.executable)


def engine_overrides(
    *,
    manifest: Manifest | None = None,
    repo: Path = REPO_ROOT,
    backend_url: str | None = None,
    passphrase: str | None = None,
    python: Path | None = None,
) -> dict[str, str]:
    """The variables edgefm sets for every engine run (to lay over the caller's environment)."""
    manifest = manifest or require_manifest()
    path = os.pathsep.join(p for p in (str(manifest.bin_dir), os.environ.get("PATH", "")) if p)
    env = {
        # The toolchain's pulumi and language host come first, so nothing else on PATH is picked up.
        "PATH": path,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        # A missing plugin fails fast instead of being downloaded.
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        # Package names are never resolved through the Pulumi Registry (a network call).
        "PULUMI_DISABLE_REGISTRY_RESOLVE": "true",
        "PULUMI_BACKEND_URL": backend_url or os.environ.get("EDGEFM_BACKEND_URL") or default_backend_url(repo),
        "PULUMI_CONFIG_PASSPHRASE": config_passphrase(passphrase),
        # The language host (see tools/engine/sources.toml) runs programs with this interpreter; Pulumi.yaml's
        # `runtime.options.virtualenv` is also honoured by hosts that read it.
        "PULUMI_PYTHON_CMD": str(python or project_python(repo)),
        # Empty values switch tracing off even where the Automation API merges os.environ underneath.
        **dict.fromkeys(TRACING_VARS, ""),
    }
    if manifest.mode == "built":
        # Only the plugin cache under PULUMI_HOME holds the pinned providers; a stray
        # pulumi-resource-* binary on PATH must not stand in for them.
        env["PULUMI_IGNORE_AMBIENT_PLUGINS"] = "true"
    if manifest.pulumi_home is not None:
        env["PULUMI_HOME"] = str(manifest.pulumi_home)
    # PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK is not set: the toolchain only provides CLIs at least as new as
    # the SDK, which pass the Automation API's check.
    return env


def engine_env(
    base: Mapping[str, str] | None = None,
    *,
    manifest: Manifest | None = None,
    repo: Path = REPO_ROOT,
    backend_url: str | None = None,
    passphrase: str | None = None,
    python: Path | None = None,
) -> dict[str, str]:
    """A complete environment for running `pulumi` as a subprocess: `base` (default os.environ) plus the
    overrides, with the tracing variables removed rather than emptied."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in TRACING_VARS}
    overrides = engine_overrides(
        manifest=manifest, repo=repo, backend_url=backend_url, passphrase=passphrase, python=python
    )
    env.update({k: v for k, v in overrides.items() if k not in TRACING_VARS})
    return env


def pulumi_command(manifest: Manifest | None = None) -> auto.PulumiCommand:
    """The Automation API's handle on the toolchain's CLI.

    `PulumiCommand(root=R)` runs `R/bin/pulumi`; it checks the CLI's version against the SDK's minimum.
    """
    manifest = manifest or require_manifest()
    if manifest.pulumi.parent.name != "bin":
        raise EngineNotReady(f"{manifest.pulumi} is not in a bin/ directory; the Automation API cannot use it")
    return auto.PulumiCommand(root=str(manifest.pulumi.parent.parent))


def recorded_pulumi_command(manifest: Manifest) -> auto.PulumiCommand:
    """The same handle without running `pulumi version`: the manifest recorded this CLI's version when the
    toolchain was checked against the SDK. For processes that run one operation each (a fleet's parallel
    workers), where the extra CLI start per operation is a measurable share of a preview."""
    if manifest.pulumi.parent.name != "bin":
        raise EngineNotReady(f"{manifest.pulumi} is not in a bin/ directory; the Automation API cannot use it")
    command = auto.PulumiCommand.__new__(auto.PulumiCommand)
    command.command = str(manifest.pulumi)
    command.version = VersionInfo.parse(manifest.cli_version.removeprefix("v"))
    return command


def workspace_options(
    *,
    work_dir: Path | None = None,
    manifest: Manifest | None = None,
    repo: Path = REPO_ROOT,
    backend_url: str | None = None,
    passphrase: str | None = None,
    python: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    command: auto.PulumiCommand | None = None,
) -> auto.LocalWorkspaceOptions:
    """Automation API options for the toolchain's engine; no ProjectSettings (inline programs have them)."""
    manifest = manifest or require_manifest()
    env = engine_overrides(manifest=manifest, repo=repo, backend_url=backend_url, passphrase=passphrase, python=python)
    env.update(extra_env or {})
    return auto.LocalWorkspaceOptions(
        work_dir=str(work_dir) if work_dir is not None else None,
        pulumi_home=env.get("PULUMI_HOME"),
        env_vars=env,
        pulumi_command=command or pulumi_command(manifest),
    )
