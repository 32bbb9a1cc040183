"""Channel pointers and resolve_channel."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefm.registry import resolve_channel
from edgefm.registry.catalog import list_versions
from edgefm.registry.channels import list_channels, promote
from edgefm.registry.errors import NotFoundError
from edgefm.registry.publish import publish
from edgefm.registry.store import Store
from tests.registry.helpers import write_model

pytestmark = pytest.mark.s3


def test_promote_and_resolve(registry: Store, tmp_path: Path) -> None:
    for version in ("1.0.0", "1.1.0-rc.1"):
        publish(
            registry,
            write_model(tmp_path / version, {"model.onnx": 2048}),
            "vit",
            version,
            journal_dir=tmp_path / "j",
        )

    promote(registry, "vit", "1.0.0", "stable")
    promote(registry, "vit", "1.1.0-rc.1", "canary")
    # Through settings, as `explain` calls it.
    assert resolve_channel(registry.settings, "vit", "stable") == "1.0.0"
    assert resolve_channel(registry, "vit", "canary") == "1.1.0-rc.1"

    pointer = promote(registry, "vit", "1.1.0-rc.1", "stable")
    assert (pointer.version, pointer.previous) == ("1.1.0-rc.1", "1.0.0")
    assert promote(registry, "vit", "1.1.0-rc.1", "stable").previous == "1.0.0"  # idempotent re-promote
    assert resolve_channel(registry.settings, "vit", "stable") == "1.1.0-rc.1"
    assert sorted(list_channels(registry, "vit")) == ["canary", "stable"]


def test_promote_refuses_version_without_manifest(registry: Store, tmp_path: Path) -> None:
    publish(registry, write_model(tmp_path / "m", {"model.onnx": 10}), "vit", "1.0.0", journal_dir=tmp_path / "j")
    # Files of 2.0.0 exist but its manifest was never written (an unfinished upload).
    registry.put_bytes(registry.file_key("vit", "2.0.0", "model.onnx"), b"partial")
    assert [(v.version, v.complete) for v in list_versions(registry, "vit")] == [
        ("1.0.0", True),
        ("2.0.0", False),
    ]
    with pytest.raises(NotFoundError, match=r"cannot promote vit 2\.0\.0 to stable: .* has no manifest"):
        promote(registry, "vit", "2.0.0", "stable")
    with pytest.raises(NotFoundError, match="has no manifest"):
        promote(registry, "vit", "3.0.0", "stable")
    assert list_channels(registry, "vit") == {}


def test_resolve_unknown_model_and_channel(registry: Store, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="unknown model 'nope'"):
        resolve_channel(registry.settings, "nope", "stable")
    publish(registry, write_model(tmp_path / "m", {"model.onnx": 10}), "vit", "1.0.0", journal_dir=tmp_path / "j")
    with pytest.raises(NotFoundError, match=r"model 'vit' has no channel 'stable' \(it has no channels yet\)"):
        resolve_channel(registry.settings, "vit", "stable")
    promote(registry, "vit", "1.0.0", "canary")
    with pytest.raises(NotFoundError, match=r"no channel 'stable' \(channels: canary\)"):
        resolve_channel(registry.settings, "vit", "stable")
