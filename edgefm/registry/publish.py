"""Publish a model directory as an immutable registry version.

Order matters: files first (parallel multipart for big ones), then a check that every file is
there, then the manifest with ``If-None-Match: *``. A reader only ever sees a version through its
manifest, so a half-finished upload is invisible, and of two racing publishers only one wins.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import zlib
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from edgefm.registry.errors import IntegrityError, UploadInterruptedError, VersionExistsError
from edgefm.registry.journal import Journal, PendingUpload, default_journal_dir
from edgefm.registry.manifest import FileEntry, Manifest, build_manifest
from edgefm.registry.names import validate_name, validate_version
from edgefm.registry.progress import NullReporter, Reporter
from edgefm.registry.settings import TransferSettings
from edgefm.registry.store import SHA256_META, Store, describe_error

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, PartTypeDef


@dataclass
class PublishStats:
    files_skipped: int = 0  # already uploaded by an earlier, interrupted run
    parts_sent: int = 0
    parts_reused: int = 0  # multipart parts found on the server and checked against local bytes
    bytes_sent: int = 0
    stale_removed: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, parts_sent: int = 0, parts_reused: int = 0, bytes_sent: int = 0) -> None:
        with self._lock:
            self.parts_sent += parts_sent
            self.parts_reused += parts_reused
            self.bytes_sent += bytes_sent


@dataclass(frozen=True)
class PublishResult:
    manifest: Manifest
    stats: PublishStats


def _crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _read_range(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


class _MultipartFile:
    """One file's multipart upload; the worker finishing its last part completes it."""

    def __init__(
        self,
        store: Store,
        key: str,
        path: Path,
        entry: FileEntry,
        part_size: int,
        upload_id: str,
        server_parts: dict[int, PartTypeDef],
    ):
        self.store, self.key, self.path, self.entry = store, key, path, entry
        self.part_size, self.upload_id, self.server_parts = part_size, upload_id, server_parts
        self.nparts = max(1, -(-entry.size // part_size))
        self.done: dict[int, CompletedPartTypeDef] = {}
        self._lock = threading.Lock()

    def part_range(self, n: int) -> tuple[int, int]:
        offset = (n - 1) * self.part_size
        return offset, min(self.part_size, self.entry.size - offset)

    def run_part(self, n: int, stats: PublishStats, reporter: Reporter) -> None:
        offset, length = self.part_range(n)
        data = _read_range(self.path, offset, length)
        crc = _crc32_b64(data)
        have = self.server_parts.get(n)
        if have is not None and have["Size"] == length and self._same(have, data, crc):
            part: CompletedPartTypeDef = {
                "PartNumber": n,
                "ETag": have["ETag"],
                "ChecksumCRC32": have.get("ChecksumCRC32") or crc,
            }
            stats.add(parts_reused=1)
        else:
            resp = self.store.client.upload_part(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=n,
                Body=data,
                ChecksumAlgorithm="CRC32",
                ChecksumCRC32=crc,
            )
            part = {"PartNumber": n, "ETag": resp["ETag"], "ChecksumCRC32": resp.get("ChecksumCRC32") or crc}
            stats.add(parts_sent=1, bytes_sent=length)
        reporter.advance(length)
        with self._lock:
            self.done[n] = part
            last = len(self.done) == self.nparts
        if last:
            self.store.client.complete_multipart_upload(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": [self.done[i] for i in sorted(self.done)]},
            )

    @staticmethod
    def _same(have: PartTypeDef, data: bytes, crc: str) -> bool:
        # Prefer the server's CRC32; the ETag is the part's MD5 unless SSE-KMS is on.
        if have.get("ChecksumCRC32"):
            return bool(have["ChecksumCRC32"] == crc)
        return bool(str(have["ETag"]).strip('"') == hashlib.md5(data, usedforsecurity=False).hexdigest())


def _list_parts(store: Store, key: str, upload_id: str) -> dict[int, PartTypeDef] | None:
    """The parts the server holds for an upload, or None if the upload is gone (aborted/expired)."""
    parts: dict[int, PartTypeDef] = {}
    try:
        for page in store.client.get_paginator("list_parts").paginate(Bucket=store.bucket, Key=key, UploadId=upload_id):
            for p in page.get("Parts", []):
                parts[p["PartNumber"]] = p
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"NoSuchUpload", "404"}:
            return None
        raise
    return parts


def publish(
    store: Store,
    root: Path,
    name: str,
    version: str,
    *,
    transfer: TransferSettings | None = None,
    framework: str | None = None,
    source: str | None = None,
    journal_dir: Path | None = None,
    reporter: Reporter | None = None,
) -> PublishResult:
    """Upload ``root`` as ``name``/``version``; resumes an earlier interrupted run of the same content."""
    validate_name(name)
    validate_version(version)
    transfer = transfer or TransferSettings()
    reporter = reporter or NullReporter()
    store.check()
    manifest_key = store.manifest_key(name, version)
    if store.exists(manifest_key):
        raise VersionExistsError(
            f"{name} {version} already exists in {store.settings.url}; versions are immutable, publish a new version"
        )

    manifest, local = build_manifest(
        root,
        name,
        version,
        framework=framework,
        source=source,
        workers=min(4, transfer.max_concurrency),
        reporter=reporter,
    )

    settings = store.settings
    journal = Journal(
        journal_dir or default_journal_dir(),
        scope=f"{settings.endpoint_url}|{settings.bucket}|{store.version_prefix(name, version)}",
    )
    stats = PublishStats()
    wanted = {store.file_key(name, version, e.path): e for e in manifest.files}

    with store.errors():
        existing = {o.key: o for o in store.list_objects(store.files_prefix(name, version))}
        small: list[tuple[str, FileEntry]] = []
        multipart: list[_MultipartFile] = []
        to_send = 0
        for key, entry in wanted.items():
            if store.holds(existing.get(key), entry.size, entry.sha256):
                stats.files_skipped += 1
                continue
            to_send += entry.size
            if entry.size < transfer.multipart_threshold:
                small.append((key, entry))
            else:
                multipart.append(_prepare_multipart(store, journal, key, local[entry.path], entry, transfer))

    reporter.phase("uploading", to_send)
    pool = ThreadPoolExecutor(max_workers=transfer.max_concurrency, thread_name_prefix="edgefm-upload")
    futures: list[Future[None]] = []
    try:
        # Big files first, so the pool stays busy with parts while small files fill the gaps.
        for mp in multipart:
            futures += [pool.submit(mp.run_part, n, stats, reporter) for n in range(1, mp.nparts + 1)]
        for key, entry in small:
            futures.append(pool.submit(_put_small, store, key, local[entry.path], entry, stats, reporter))
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for fut in done:
            fut.result()
    except BaseException as exc:
        # Stop queued parts; in-flight ones finish. Open multipart uploads stay for the resume.
        pool.shutdown(wait=True, cancel_futures=True)
        if isinstance(exc, Exception):
            why = describe_error(exc, settings)
            raise UploadInterruptedError(
                f"upload of {name} {version} interrupted ({why}); run the same command again to resume "
                f"({stats.parts_sent} parts of this run are kept)"
            ) from exc
        raise
    pool.shutdown(wait=True)

    with store.errors():
        # Everything the manifest names must be there before the manifest makes the version visible.
        present = {o.key: o for o in store.list_objects(store.files_prefix(name, version))}
        for key, entry in wanted.items():
            obj = present.get(key)
            if obj is None or obj.size != entry.size:
                raise IntegrityError(f"after upload, s3://{store.bucket}/{key} is missing or has the wrong size")
        # Leftovers from an earlier attempt with different content: not part of this version.
        stats.stale_removed = sorted(k for k in present if k not in wanted)
        store.delete(stats.stale_removed)
        if not store.put_if_absent(manifest_key, manifest.to_json()):
            raise VersionExistsError(f"{name} {version} was published by someone else while this upload ran")
    journal.remove()
    return PublishResult(manifest, stats)


def _prepare_multipart(
    store: Store, journal: Journal, key: str, path: Path, entry: FileEntry, transfer: TransferSettings
) -> _MultipartFile:
    pending = journal.get(key)
    if pending and (pending.sha256, pending.size) != (entry.sha256, entry.size):
        # Our own earlier upload of other content: its parts are useless.
        _abort(store, key, pending.upload_id)
        pending = None
    # A resumed upload keeps the part size it started with, whatever --part-size-mb says now.
    part_size = pending.part_size if pending else transfer.part_size_for(entry.size)
    server_parts = _list_parts(store, key, pending.upload_id) if pending else None
    if pending is None or server_parts is None:
        upload_id = store.client.create_multipart_upload(
            Bucket=store.bucket,
            Key=key,
            Metadata={SHA256_META: entry.sha256},
            ContentType="application/octet-stream",
            ChecksumAlgorithm="CRC32",
        )["UploadId"]
        journal.record(
            PendingUpload(key=key, sha256=entry.sha256, size=entry.size, part_size=part_size, upload_id=upload_id)
        )
        server_parts = {}
    else:
        upload_id = pending.upload_id
    return _MultipartFile(store, key, path, entry, part_size, upload_id, server_parts)


def _abort(store: Store, key: str, upload_id: str) -> None:
    try:
        store.client.abort_multipart_upload(Bucket=store.bucket, Key=key, UploadId=upload_id)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"NoSuchUpload", "404"}:
            raise


def _put_small(store: Store, key: str, path: Path, entry: FileEntry, stats: PublishStats, reporter: Reporter) -> None:
    data = path.read_bytes()
    if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise IntegrityError(f"{path} changed while publishing")
    store.client.put_object(
        Bucket=store.bucket,
        Key=key,
        Body=data,
        Metadata={SHA256_META: entry.sha256},
        ContentType="application/octet-stream",
    )
    stats.add(bytes_sent=len(data))
    reporter.advance(len(data))
