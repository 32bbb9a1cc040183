"""Read-only views of the registry: models, versions and manifests."""

from __future__ import annotations

from dataclasses import dataclass

from edgefm.registry.errors import InvalidInputError, NotFoundError
from edgefm.registry.manifest import Manifest
from edgefm.registry.names import SemVer, validate_name, validate_version
from edgefm.registry.store import Store


@dataclass(frozen=True)
class VersionInfo:
    version: str
    manifest: Manifest | None  # None: files uploaded (or uploading) but no manifest yet

    @property
    def complete(self) -> bool:
        return self.manifest is not None


def list_models(store: Store) -> list[str]:
    return sorted(store.list_dirs(store.root_prefix()))


def _semver_or_none(text: str) -> SemVer | None:
    try:
        return SemVer.parse(text)
    except InvalidInputError:
        return None  # "channels/" and anything that is not a version directory


def list_versions(store: Store, name: str) -> list[VersionInfo]:
    """Every version directory of ``name`` in SemVer order, with its manifest if it has one."""
    validate_name(name)
    dirs = store.list_dirs(store.model_prefix(name))
    if not dirs:
        raise NotFoundError(f"unknown model {name!r} in {store.settings.url}")
    versions = sorted(v for v in map(_semver_or_none, dirs) if v is not None)
    return [VersionInfo(v.text, read_manifest(store, name, v.text)) for v in versions]


def read_manifest(store: Store, name: str, version: str) -> Manifest | None:
    key = store.manifest_key(name, version)
    data = store.get_bytes(key)
    return None if data is None else Manifest.from_json(data, f"s3://{store.bucket}/{key}")


def load_manifest(store: Store, name: str, version: str) -> Manifest:
    """The manifest of a published version; NotFoundError says whether the model or version is unknown."""
    validate_name(name)
    validate_version(version)
    manifest = read_manifest(store, name, version)
    if manifest is not None:
        return manifest
    dirs = store.list_dirs(store.model_prefix(name))
    if not dirs:
        raise NotFoundError(f"unknown model {name!r} in {store.settings.url}")
    if version in dirs:
        raise NotFoundError(f"{name} {version} is not published: its upload has not finished (no manifest)")
    known = [v.text for v in sorted(v for v in map(_semver_or_none, dirs) if v is not None)]
    raise NotFoundError(f"unknown version {name} {version} (versions: {', '.join(known) or 'none'})")
