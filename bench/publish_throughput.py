"""Publish throughput: `edgefm models publish` vs boto3's own threaded `upload_file`, side by side.

A ~1 GB synthetic model (2 x 400 MiB shards plus smaller files, random bytes written once) is
uploaded to a local MinIO on 127.0.0.1, alternating the two methods for several repetitions so
that background load on a shared machine hits both alike:

- edgefm:   the `edgefm models publish` command (hashing, parallel multipart, manifest last);
- baseline: boto3 `upload_file` per file with its default `TransferConfig` (threaded multipart: 10 threads,
  8 MiB parts from 8 MiB up) - what a user would otherwise script.

Each repetition uploads to fresh keys and deletes them afterwards (not timed). What publish adds beyond moving
bytes is measured on its own, once, on the same files: the sha256 pass that builds the manifest (every byte is
read and hashed before the upload), and the resume journal's writes (one small JSON rewrite per multipart file
plus its removal at the end).

    python bench/publish_throughput.py [--reps 3] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from edgefm.cli import app
from edgefm.registry.journal import Journal, PendingUpload
from edgefm.registry.manifest import build_manifest
from tools.minio.server import MinioServer, run_minio

MiB = 1024 * 1024
MB = 1_000_000
# (relative path, size in MiB): ~1000 MiB in all.
FILES = [
    ("model-00001-of-00002.safetensors", 400),
    ("model-00002-of-00002.safetensors", 400),
    ("vision_tower.bin", 150),
    ("tokenizer.json", 40),
    ("embeddings/extra.bin", 10),
    ("config.json", 0.002),
    ("preprocessor_config.json", 0.001),
]


def write_model(root: Path, scale: float) -> int:
    total = 0
    for rel, size_mib in FILES:
        size = max(1, int(size_mib * scale * MiB))
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            left = size
            while left > 0:
                left -= f.write(os.urandom(min(left, 8 * MiB)))
        total += size
    return total


def empty_bucket(s3: Any, bucket: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def timed(fn: Callable[[], None]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each method (alternating)")
    parser.add_argument("--scale", type=float, default=1.0, help="model size factor (1.0 = ~1 GB)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="edgefm-bench-") as tmp:
        tmpdir = Path(tmp)
        model = tmpdir / "model"
        total = write_model(model, args.scale)
        print(f"model: {len(FILES)} files, {total / MB:.0f} MB in {model}", file=sys.stderr)
        with run_minio(tmpdir / "minio") as server:
            rows = bench(server, model, total, args.reps, tmpdir)
        overhead = publish_overhead(model, tmpdir / "journal-cost")
    print_table(rows, total)
    print_overhead(overhead, rows, total)
    return 0


def publish_overhead(model: Path, journal_dir: Path) -> dict[str, float]:
    """What publish does besides moving bytes, timed on its own on the same files."""
    started = time.perf_counter()
    manifest, _ = build_manifest(model, "bench", "9.9.9", workers=4)
    hashing = time.perf_counter() - started
    big = [e for e in manifest.files if e.size >= 32 * MiB]  # the files publish sends multipart (journalled)
    started = time.perf_counter()
    journal = Journal(journal_dir, scope="bench")
    for i, entry in enumerate(big):
        journal.record(
            PendingUpload(key=entry.path, sha256=entry.sha256, size=entry.size, part_size=16 * MiB, upload_id=str(i))
        )
    journal.remove()
    journalling = time.perf_counter() - started
    return {"hashing": hashing, "journal": journalling, "manifest_bytes": float(len(manifest.to_json()))}


def print_overhead(overhead: dict[str, float], rows: list[tuple[float, float]], total: int) -> None:
    publish_s = statistics.median(e for e, _ in rows)
    print(
        f"publish's own work on the same files: sha256 manifest pass {overhead['hashing']:.2f}s "
        f"({total / MB / overhead['hashing']:.0f} MB/s, {overhead['hashing'] / publish_s:.0%} of a median publish); "
        f"resume journal {overhead['journal'] * 1000:.1f} ms; manifest {overhead['manifest_bytes'] / 1000:.1f} kB, "
        "one conditional PUT after a listing that checks every file"
    )


def bench(server: MinioServer, model: Path, total: int, reps: int, tmpdir: Path) -> list[tuple[float, float]]:
    s3 = boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
    )
    bucket = "bench"
    s3.create_bucket(Bucket=bucket)
    os.environ.update(
        EDGEFM_REGISTRY_BUCKET=bucket,
        EDGEFM_REGISTRY_ENDPOINT_URL=server.endpoint_url,
        EDGEFM_REGISTRY_ACCESS_KEY_ID=server.access_key,
        EDGEFM_REGISTRY_SECRET_ACCESS_KEY=server.secret_key,
        EDGEFM_RESUME_DIR=str(tmpdir / "journal"),
    )
    defaults = TransferConfig()  # boto3's defaults: threaded, multipart from 8 MiB
    files = sorted(p for p in model.rglob("*") if p.is_file())

    def edgefm(i: int) -> None:
        args = ["models", "publish", str(model), "--name", "bench", "--version", f"1.0.{i}", "--no-progress"]
        code = app(args, standalone_mode=False)  # returns the exit code instead of exiting
        if code:
            raise SystemExit(f"edgefm models publish failed with exit code {code}")

    def baseline(i: int) -> None:
        for path in files:
            key = f"baseline/{i}/{path.relative_to(model).as_posix()}"
            s3.upload_file(str(path), bucket, key, Config=defaults)

    rows: list[tuple[float, float]] = []
    for i in range(reps):
        # Alternate which goes first, so neither always runs on a warmer server.
        order = [("edgefm", edgefm), ("baseline", baseline)]
        if i % 2:
            order.reverse()
        took: dict[str, float] = {}
        for label, fn in order:
            took[label] = timed(functools.partial(fn, i))
            empty_bucket(s3, bucket)
        rows.append((took["edgefm"], took["baseline"]))
        print(f"rep {i + 1}: edgefm {took['edgefm']:.2f}s, baseline {took['baseline']:.2f}s", file=sys.stderr)
    return rows


def print_table(rows: list[tuple[float, float]], total: int) -> None:
    mbps = [(total / MB / e, total / MB / b) for e, b in rows]
    print(f"\npublish throughput, {total / MB:.0f} MB model, local MinIO on 127.0.0.1, {os.cpu_count()} CPUs")
    print(f"{'rep':>6} | {'edgefm publish MB/s':>20} | {'boto3 upload_file MB/s':>25} | {'ratio':>6}")
    print(f"{'-' * 6}-+-{'-' * 20}-+-{'-' * 25}-+-{'-' * 6}")
    for i, (e, b) in enumerate(mbps, 1):
        print(f"{i:>6} | {e:>20.1f} | {b:>25.1f} | {e / b:>5.2f}x")
    e_med = statistics.median(e for e, _ in mbps)
    b_med = statistics.median(b for _, b in mbps)
    print(f"{'median':>6} | {e_med:>20.1f} | {b_med:>25.1f} | {e_med / b_med:>5.2f}x")
    print(f"load average at end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    raise SystemExit(main())
