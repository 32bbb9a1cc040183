"""verify against the manifest, and sync into a site mirror (what the ModelSync CronJob runs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgefm.registry.channels import promote
from edgefm.registry.publish import publish
from edgefm.registry.store import Store
from tests.registry.helpers import MiB, run, write_model
from tools.minio.server import MinioServer

pytestmark = pytest.mark.s3


def test_verify_reports_corrupted_missing_and_extra(
    registry: Store, tmp_path: Path, s3: Any, cli_env: dict[str, str]
) -> None:
    files = {"1/model.onnx": 6 * MiB, "config.pbtxt": 200, "labels.txt": 100, "vocab.txt": 300}
    model = write_model(tmp_path / "m", files)
    publish(registry, model, "vit", "1.0.0", journal_dir=tmp_path / "j")

    ok = run(["verify", "vit", "1.0.0"], cli_env)
    assert ok.exit_code == 0, ok.output
    assert "OK  vit 1.0.0: 4 files" in ok.stdout

    def key(path: str) -> str:
        return registry.file_key("vit", "1.0.0", path)

    data = bytearray((model / "1/model.onnx").read_bytes())
    data[3 * MiB] ^= 0x01  # one flipped bit, same size: only a recomputed sha256 notices
    s3.put_object(Bucket=registry.bucket, Key=key("1/model.onnx"), Body=bytes(data), Metadata={"sha256": "0" * 64})
    s3.put_object(Bucket=registry.bucket, Key=key("vocab.txt"), Body=b"truncated")
    s3.delete_object(Bucket=registry.bucket, Key=key("labels.txt"))
    s3.put_object(Bucket=registry.bucket, Key=key("notes.md"), Body=b"not in the manifest")

    bad = run(["verify", "vit", "1.0.0"], cli_env)
    assert bad.exit_code == 1
    lines = bad.stdout.splitlines()
    assert lines[0] == "missing   labels.txt"
    assert lines[1].startswith("corrupted 1/model.onnx  (sha256 ")
    assert lines[2] == "corrupted vocab.txt  (size 9, expected 300)"
    assert lines[3] == "extra     notes.md  (not in the manifest)"
    assert "FAILED  vit 1.0.0: 4 difference(s)" in lines[4]


def test_sync_to_site_bucket_then_verify(
    registry: Store,
    tmp_path: Path,
    s3: Any,
    minio: MinioServer,
    make_bucket: Callable[[], str],
    cli_env: dict[str, str],
) -> None:
    for version, size in (("1.0.0", 40 * MiB), ("1.1.0", 8 * MiB)):
        model = write_model(tmp_path / version, {"1/model.plan": size, "config.pbtxt": 120})
        publish(registry, model, "vit", version, journal_dir=tmp_path / "j")
    promote(registry, "vit", "1.0.0", "stable")
    site = make_bucket()
    # The CronJob's configuration: env vars only (registry + mirror credentials kept apart).
    cron_env = {
        **cli_env,
        "EDGEFM_MODEL_NAME": "vit",
        "EDGEFM_MODEL_CHANNEL": "stable",
        "EDGEFM_MIRROR_BUCKET": site,
        "EDGEFM_MIRROR_ENDPOINT_URL": minio.endpoint_url,
        "EDGEFM_MIRROR_PREFIX": "edge/models",
        "EDGEFM_MIRROR_ACCESS_KEY_ID": minio.access_key,
        "EDGEFM_MIRROR_SECRET_ACCESS_KEY": minio.secret_key,
    }

    first = run(["sync"], cron_env)
    assert first.exit_code == 0, first.output
    assert "synced vit 1.0.0 (channel stable)" in first.stdout and "2 copied, 0 already present" in first.stdout
    assert "OK  vit 1.0.0: 2 files" in first.stdout

    def mirror_key(rest: str) -> str:
        return f"edge/models/vit/{rest}"

    pointer = json.loads(s3.get_object(Bucket=site, Key=mirror_key("channels/stable.json"))["Body"].read())
    assert pointer["version"] == "1.0.0"
    assert run(["verify", "vit", "1.0.0"], cron_env).exit_code == 0  # EDGEFM_MIRROR_BUCKET set: checks the mirror

    again = run(["sync"], cron_env)
    assert again.exit_code == 0 and "0 copied, 2 already present" in again.stdout

    # Bit rot at the site: the metadata still claims the right sha256, so only verify notices; sync repairs.
    body = bytearray(s3.get_object(Bucket=site, Key=mirror_key("1.0.0/files/1/model.plan"))["Body"].read())
    body[-1] ^= 0xFF
    s3.put_object(
        Bucket=site,
        Key=mirror_key("1.0.0/files/1/model.plan"),
        Body=bytes(body),
        Metadata={"sha256": publish_sha(registry, "1.0.0", "1/model.plan")},
    )
    rotten = run(["verify", "vit", "1.0.0"], cron_env)
    assert rotten.exit_code == 1 and "corrupted 1/model.plan" in rotten.stdout
    repaired = run(["sync"], cron_env)
    assert repaired.exit_code == 0, repaired.output
    assert "re-copied after verify: 1/model.plan" in repaired.stdout

    # The channel moves: the next run mirrors the new version and moves the site's pointer.
    promote(registry, "vit", "1.1.0", "stable")
    moved = run(["sync"], cron_env)
    assert moved.exit_code == 0 and "synced vit 1.1.0 (channel stable)" in moved.stdout
    pointer = json.loads(s3.get_object(Bucket=site, Key=mirror_key("channels/stable.json"))["Body"].read())
    assert pointer["version"] == "1.1.0"

    # A mirror without the manifest does not hold the version, whatever its files say.
    s3.delete_object(Bucket=site, Key=mirror_key("1.1.0/manifest.json"))
    missing = run(["verify", "vit", "1.1.0"], cron_env)
    assert missing.exit_code == 1 and "manifest  edge/models/vit/1.1.0/manifest.json" in missing.stdout


def publish_sha(registry: Store, version: str, path: str) -> str:
    head = registry.head(registry.file_key("vit", version, path))
    assert head is not None
    return str(head["Metadata"]["sha256"])


def test_sync_with_explicit_flags_and_bad_mirror_credentials(
    registry: Store,
    tmp_path: Path,
    minio: MinioServer,
    make_bucket: Callable[[], str],
    cli_env: dict[str, str],
) -> None:
    publish(
        registry,
        write_model(tmp_path / "m", {"model.onnx": 1000}),
        "vit",
        "1.0.0",
        journal_dir=tmp_path / "j",
    )
    site = make_bucket()
    flags = ["sync", "vit", "--version", "1.0.0", "--to-bucket", site, "--to-endpoint", minio.endpoint_url]
    bad = run(
        flags,
        {
            **cli_env,
            "EDGEFM_MIRROR_ACCESS_KEY_ID": minio.access_key,
            "EDGEFM_MIRROR_SECRET_ACCESS_KEY": "wrong",
        },
    )
    assert bad.exit_code == 2
    assert "credentials rejected" in bad.stderr and "EDGEFM_MIRROR_SECRET_ACCESS_KEY" in bad.stderr
    good = run(
        flags,
        {
            **cli_env,
            "EDGEFM_MIRROR_ACCESS_KEY_ID": minio.access_key,
            "EDGEFM_MIRROR_SECRET_ACCESS_KEY": minio.secret_key,
        },
    )
    assert good.exit_code == 0, good.output
    assert f"to s3://{site}/models" in good.stdout
