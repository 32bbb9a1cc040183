"""Mirror one registry version into a site bucket, then verify the mirror.

This is what a site's ModelSync CronJob runs (``edgefm models sync``). It is idempotent: files
already in the mirror with the right size and sha256 metadata are skipped, files left over from
elsewhere are removed, and the manifest (plus the channel pointer, when following a channel) is
written only after the files verify, so Triton or any other reader at the site never sees a
partial version.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from boto3.s3.transfer import TransferConfig

from edgefm.registry.catalog import load_manifest
from edgefm.registry.channels import get_channel, pointer_json
from edgefm.registry.errors import IntegrityError, InvalidInputError
from edgefm.registry.manifest import FileEntry, Manifest
from edgefm.registry.progress import NullReporter, Reporter
from edgefm.registry.settings import TransferSettings
from edgefm.registry.store import SHA256_META, Store
from edgefm.registry.verify import VerifyReport, verify


class _HashingReader:
    """A read-only, non-seekable view of a streaming body that hashes what passes through.

    Non-seekable on purpose: s3transfer then reads it strictly in order, so the hash is of the
    bytes in the order they were uploaded.
    """

    def __init__(self, body: Any, reporter: Reporter):
        self._body, self._reporter = body, reporter
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, amt: int | None = None) -> bytes:
        data: bytes = self._body.read(amt)
        self.sha256.update(data)
        self.size += len(data)
        self._reporter.advance(len(data))
        return data


@dataclass
class SyncResult:
    name: str
    version: str
    copied: list[str] = field(default_factory=list)
    skipped: int = 0
    removed: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    report: VerifyReport | None = None

    @property
    def ok(self) -> bool:
        return self.report is not None and self.report.ok


def _copy_file(
    registry: Store,
    mirror: Store,
    manifest: Manifest,
    entry: FileEntry,
    config: TransferConfig,
    reporter: Reporter,
) -> None:
    src_key = registry.file_key(manifest.name, manifest.version, entry.path)
    dst_key = mirror.file_key(manifest.name, manifest.version, entry.path)
    body = registry.open_stream(src_key)
    reader = _HashingReader(body, reporter)
    try:
        with mirror.errors():
            mirror.client.upload_fileobj(
                cast(BinaryIO, reader),  # s3transfer only needs read()
                mirror.bucket,
                dst_key,
                ExtraArgs={
                    "Metadata": {SHA256_META: entry.sha256},
                    "ContentType": "application/octet-stream",
                },
                Config=config,
            )
    finally:
        body.close()
    if reader.sha256.hexdigest() != entry.sha256 or reader.size != entry.size:
        mirror.delete([dst_key])  # never leave bytes the manifest disowns
        raise IntegrityError(
            f"the registry's copy of {manifest.name} {manifest.version} {entry.path} does not match its "
            f"manifest (run `edgefm models verify {manifest.name} {manifest.version}` against the registry)"
        )


def sync(
    registry: Store,
    mirror: Store,
    name: str,
    *,
    version: str | None = None,
    channel: str | None = None,
    transfer: TransferSettings | None = None,
    reporter: Reporter | None = None,
) -> SyncResult:
    if (version is None) == (channel is None):
        raise InvalidInputError("give exactly one of --version or --channel")
    transfer = transfer or TransferSettings()
    reporter = reporter or NullReporter()
    registry.check()
    # Read the pointer once: the mirror gets the very pointer whose version it synced, even if the
    # channel moves on in the registry meanwhile.
    pointer = get_channel(registry, name, channel) if channel is not None else None
    version = pointer.version if pointer is not None else version
    assert version is not None
    manifest = load_manifest(registry, name, version)
    mirror.check()
    result = SyncResult(name, version)
    config = TransferConfig(
        multipart_threshold=transfer.multipart_threshold,
        multipart_chunksize=transfer.part_size,
        max_concurrency=max(1, transfer.max_concurrency // 2),
    )

    def copy(entries: list[FileEntry]) -> None:
        reporter.phase("copying", sum(e.size for e in entries))
        # A few files at a time; each big one is also split into parallel parts by s3transfer.
        with ThreadPoolExecutor(max_workers=min(4, max(1, len(entries)))) as pool:
            list(pool.map(lambda e: _copy_file(registry, mirror, manifest, e, config, reporter), entries))
        result.copied += [e.path for e in entries]

    prefix = mirror.files_prefix(name, version)
    present = {o.key[len(prefix) :]: o for o in mirror.list_objects(prefix)}
    todo: list[FileEntry] = []
    for entry in manifest.files:
        if mirror.holds(present.get(entry.path), entry.size, entry.sha256):
            result.skipped += 1
        else:
            todo.append(entry)
    copy(todo)
    wanted = {e.path for e in manifest.files}
    result.removed = sorted(p for p in present if p not in wanted)
    mirror.delete([prefix + p for p in result.removed])

    report = verify(manifest, mirror, check_manifest_copy=False, reporter=reporter)
    broken = {d.path for d in report.differences if d.kind in ("missing", "corrupted")}
    if broken:
        # Metadata said these were fine but the bytes are not (bit rot, overwritten): copy once more.
        copy([e for e in manifest.files if e.path in broken])
        result.repaired = sorted(broken)
        report = verify(manifest, mirror, check_manifest_copy=False, reporter=reporter)
    if report.ok:
        mirror.put_bytes(mirror.manifest_key(name, version), manifest.to_json())
        if pointer is not None:
            mirror.put_bytes(mirror.channel_key(name, pointer.channel), pointer_json(pointer))
    result.report = report
    return result
