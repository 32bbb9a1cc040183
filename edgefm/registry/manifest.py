"""The manifest of a model version: per-file sha256 and size, framework, creation time, source.

Also the local side: scanning a model directory and hashing files by streaming.
"""

from __future__ import annotations

import hashlib
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgefm.registry.errors import InvalidInputError, RegistryError
from edgefm.registry.names import validate_name, validate_version
from edgefm.registry.progress import NullReporter, Reporter

HASH_CHUNK = 1024 * 1024

# First matching suffix wins; "--framework" overrides the guess.
_FRAMEWORK_BY_SUFFIX = {
    ".plan": "tensorrt",
    ".engine": "tensorrt",
    ".onnx": "onnx",
    ".safetensors": "safetensors",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".bin": "pytorch",
    ".savedmodel": "tensorflow",
    ".pb": "tensorflow",
    ".gguf": "gguf",
}


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("path")
    @classmethod
    def _relative_posix(cls, v: str) -> str:
        p = PurePosixPath(v)
        if p.is_absolute() or ".." in p.parts or v != str(p) or v in ("", "."):
            raise ValueError(f"file path {v!r} must be a normalised relative POSIX path")
        return v


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    name: str
    version: str
    framework: str
    created_at: datetime
    source: str
    files: tuple[FileEntry, ...]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return validate_name(v)

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        return validate_version(v)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes | str, where: str) -> Manifest:
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise RegistryError(f"manifest {where} is invalid: {exc.errors()[0]['msg']}") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def scan_dir(root: Path) -> list[tuple[str, Path]]:
    """Regular files under ``root`` as (relative POSIX path, absolute path), sorted.

    Symlinked directories are not followed (a model directory should not reach outside itself);
    symlinked files are read through.
    """
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a directory")
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in filenames:
            full = Path(dirpath) / fn
            if full.is_file():
                found.append((full.relative_to(root).as_posix(), full))
    if not found:
        raise InvalidInputError(f"{root} contains no files")
    return sorted(found)


def guess_framework(paths: list[str]) -> str:
    suffixes = {PurePosixPath(p).suffix.lower() for p in paths}
    for suffix, framework in _FRAMEWORK_BY_SUFFIX.items():
        if suffix in suffixes:
            return framework
    return "unknown"


def default_source(root: Path) -> str:
    return f"file://{socket.gethostname()}{root.resolve().as_posix()}"


def build_manifest(
    root: Path,
    name: str,
    version: str,
    *,
    framework: str | None = None,
    source: str | None = None,
    workers: int = 2,
    reporter: Reporter | None = None,
) -> tuple[Manifest, dict[str, Path]]:
    """Hash every file (in parallel: hashlib releases the GIL) and build the manifest.

    Returns the manifest and a map from manifest path to local file.
    """
    files = scan_dir(root)
    reporter = reporter or NullReporter()
    reporter.phase("hashing", sum(full.stat().st_size for _, full in files))

    def entry(item: tuple[str, Path]) -> FileEntry:
        rel, full = item
        e = FileEntry(path=rel, size=full.stat().st_size, sha256=sha256_file(full))
        reporter.advance(e.size)
        return e

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        entries = tuple(pool.map(entry, files))
    manifest = Manifest(
        name=name,
        version=version,
        framework=framework or guess_framework([rel for rel, _ in files]),
        created_at=datetime.now(UTC),
        source=source or default_source(root),
        files=entries,
    )
    return manifest, dict(files)
