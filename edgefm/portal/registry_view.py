"""The model registry as the portal shows it: models, versions, channels (read from the hub's bucket)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from edgefm.registry import BucketSettings, RegistryError


@dataclass(frozen=True)
class VersionRow:
    version: str
    complete: bool
    created_at: datetime | None = None
    framework: str = ""
    size_bytes: int = 0


@dataclass(frozen=True)
class ModelRow:
    name: str
    versions: list[VersionRow] = field(default_factory=list)
    # Channel → version it points to.
    channels: dict[str, str] = field(default_factory=dict)


class RegistrySource(Protocol):
    def models(self) -> list[ModelRow]: ...


class NoRegistry:
    """No registry configured (`EDGEFM_REGISTRY_BUCKET` unset): the page says so."""

    reason = "no model registry configured (set EDGEFM_REGISTRY_BUCKET and its endpoint and credentials)"

    def models(self) -> list[ModelRow]:
        raise RegistryError(self.reason)


class BucketRegistry:
    """Reads the registry bucket with edgefm.registry's own catalog and channel readers."""

    def __init__(self, settings: BucketSettings) -> None:
        self.settings = settings

    def models(self) -> list[ModelRow]:
        from edgefm.registry.catalog import list_models, list_versions
        from edgefm.registry.channels import list_channels
        from edgefm.registry.store import Store

        store = Store(self.settings)
        rows: list[ModelRow] = []
        for name in list_models(store):
            versions = []
            for info in list_versions(store, name):
                m = info.manifest
                versions.append(
                    VersionRow(
                        info.version,
                        info.complete,
                        m.created_at if m else None,
                        m.framework if m else "",
                        sum(f.size for f in m.files) if m else 0,
                    )
                )
            channels = {c: p.version for c, p in sorted(list_channels(store, name).items())}
            rows.append(ModelRow(name, versions, channels))
        return rows
