"""Compare a bucket's copy of a version (the registry itself or a site mirror) with its manifest.

Every file is re-read and its sha256 recomputed by streaming; object metadata and ETags are not
trusted, since they would not notice bit rot or a file overwritten in place.
"""

from __future__ import annotations

import contextlib
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from edgefm.registry.errors import RegistryError
from edgefm.registry.manifest import HASH_CHUNK, FileEntry, Manifest
from edgefm.registry.progress import NullReporter, Reporter
from edgefm.registry.store import Store

DifferenceKind = Literal["missing", "extra", "corrupted", "manifest"]


@dataclass(frozen=True)
class Difference:
    kind: DifferenceKind
    path: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind:<9} {self.path}" + (f"  ({self.detail})" if self.detail else "")


@dataclass
class VerifyReport:
    name: str
    version: str
    where: str
    files_checked: int = 0
    bytes_checked: int = 0
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


def _same_manifest(data: bytes, manifest: Manifest) -> bool:
    try:
        return Manifest.from_json(data, "mirror") == manifest
    except RegistryError:
        return False  # unreadable counts as different


def sha256_object(store: Store, key: str, reporter: Reporter) -> str:
    h = hashlib.sha256()
    body = store.open_stream(key)
    with store.errors(), contextlib.closing(body):
        for chunk in body.iter_chunks(HASH_CHUNK):
            h.update(chunk)
            reporter.advance(len(chunk))
    return h.hexdigest()


def verify(
    manifest: Manifest,
    target: Store,
    *,
    check_manifest_copy: bool,
    workers: int = 4,
    reporter: Reporter | None = None,
) -> VerifyReport:
    """Check ``target`` against ``manifest`` (from the registry).

    ``check_manifest_copy``: the target is a mirror, whose own manifest must equal the registry's.
    """
    reporter = reporter or NullReporter()
    name, version = manifest.name, manifest.version
    report = VerifyReport(name, version, target.settings.where)
    prefix = target.files_prefix(name, version)
    listed = {o.key[len(prefix) :]: o for o in target.list_objects(prefix)}
    wanted = {f.path: f for f in manifest.files}

    to_hash: list[FileEntry] = []
    for path, entry in wanted.items():
        obj = listed.get(path)
        if obj is None:
            report.differences.append(Difference("missing", path))
        elif obj.size != entry.size:
            report.differences.append(Difference("corrupted", path, f"size {obj.size}, expected {entry.size}"))
        else:
            to_hash.append(entry)
    report.differences += [Difference("extra", p, "not in the manifest") for p in sorted(listed.keys() - wanted)]

    reporter.phase("verifying", sum(e.size for e in to_hash))

    def check(entry: FileEntry) -> Difference | None:
        actual = sha256_object(target, prefix + entry.path, reporter)
        if actual != entry.sha256:
            return Difference("corrupted", entry.path, f"sha256 {actual[:12]}…, expected {entry.sha256[:12]}…")
        return None

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="edgefm-verify") as pool:
        report.differences += [d for d in pool.map(check, to_hash) if d is not None]
    report.files_checked = len(wanted)
    report.bytes_checked = sum(e.size for e in to_hash)

    if check_manifest_copy:
        key = target.manifest_key(name, version)
        data = target.get_bytes(key)
        if data is None:
            report.differences.append(Difference("manifest", key, "missing: the version is not visible here"))
        elif not _same_manifest(data, manifest):
            report.differences.append(Difference("manifest", key, "differs from the registry's manifest"))
    order = {"missing": 0, "corrupted": 1, "extra": 2, "manifest": 3}
    report.differences.sort(key=lambda d: (order[d.kind], d.path))
    return report
