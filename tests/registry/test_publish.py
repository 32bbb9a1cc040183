"""Publishing: big multipart uploads, resume after an interruption, immutability."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from edgefm.registry.catalog import load_manifest
from edgefm.registry.errors import NotFoundError, UploadInterruptedError, VersionExistsError
from edgefm.registry.publish import publish
from edgefm.registry.settings import TransferSettings
from edgefm.registry.store import Store
from edgefm.registry.verify import verify
from tests.registry.helpers import MiB, write_model

pytestmark = pytest.mark.s3


def test_publish_200mb_multipart(registry: Store, tmp_path: Path, s3: Any) -> None:
    model = write_model(tmp_path / "vit", {"1/model.onnx": 200 * MiB, "config.pbtxt": 300, "tokenizer.json": MiB})
    transfer = TransferSettings(part_size=16 * MiB, max_concurrency=6)

    result = publish(registry, model, "vit-bridge", "1.0.0", transfer=transfer, journal_dir=tmp_path / "j")

    m = result.manifest
    assert [f.path for f in m.files] == ["1/model.onnx", "config.pbtxt", "tokenizer.json"]
    assert m.framework == "onnx" and m.total_size == 201 * MiB + 300
    big = registry.file_key("vit-bridge", "1.0.0", "1/model.onnx")
    head = s3.head_object(Bucket=registry.bucket, Key=big)
    assert head["ETag"].strip('"').endswith("-13")  # 200 MiB / 16 MiB parts: a real multipart upload
    assert head["Metadata"]["sha256"] == m.files[0].sha256
    assert result.stats.parts_sent == 13 and result.stats.parts_reused == 0
    assert load_manifest(registry, "vit-bridge", "1.0.0") == m
    assert verify(m, registry, check_manifest_copy=False).ok
    assert not (tmp_path / "j").exists() or not any((tmp_path / "j").iterdir())  # journal cleaned up


def test_interrupted_upload_resumes_without_resending_parts(registry: Store, tmp_path: Path, s3: Any) -> None:
    model = write_model(tmp_path / "m", {"weights.safetensors": 50 * MiB, "config.json": 1000})
    transfer = TransferSettings(part_size=5 * MiB, multipart_threshold=5 * MiB, max_concurrency=4)
    journal = tmp_path / "journal"
    key = registry.file_key("llm", "0.1.0", "weights.safetensors")

    # Run 1: the 5th UploadPart call (and every one after it) fails before it is sent.
    calls = 0
    lock = threading.Lock()

    def fail_after_four(params: dict[str, Any], **_: Any) -> None:
        nonlocal calls
        with lock:
            calls += 1
            if calls > 4:
                raise ConnectionResetError("injected: network dropped")

    registry.client.meta.events.register("before-parameter-build.s3.UploadPart", fail_after_four)
    with pytest.raises(UploadInterruptedError, match="run the same command again to resume"):
        publish(registry, model, "llm", "0.1.0", transfer=transfer, journal_dir=journal)
    registry.client.meta.events.unregister("before-parameter-build.s3.UploadPart", fail_after_four)

    # The half-finished version is invisible: no manifest, so nothing can load or promote it.
    assert not registry.exists(registry.manifest_key("llm", "0.1.0"))
    with pytest.raises(NotFoundError):
        load_manifest(registry, "llm", "0.1.0")
    uploads = s3.list_multipart_uploads(Bucket=registry.bucket)["Uploads"]
    assert [u["Key"] for u in uploads] == [key]
    finished = {
        p["PartNumber"]
        for p in s3.list_parts(Bucket=registry.bucket, Key=key, UploadId=uploads[0]["UploadId"])["Parts"]
    }
    assert len(finished) == 4

    # Run 2 (a fresh process would look the same: new client, state from the journal + ListParts).
    resumed = Store(registry.settings, max_pool_connections=16)
    sent: list[int] = []
    resumed.client.meta.events.register(
        "before-parameter-build.s3.UploadPart", lambda params, **_: sent.append(params["PartNumber"])
    )
    # Other tuning flags on the rerun do not matter: the upload keeps its 5 MiB parts.
    rerun = TransferSettings(part_size=8 * MiB, max_concurrency=2)
    result = publish(resumed, model, "llm", "0.1.0", transfer=rerun, journal_dir=journal)

    assert sorted(sent) == sorted(set(range(1, 11)) - finished)  # only the missing parts went over the wire
    assert result.stats.parts_reused == 4 and result.stats.parts_sent == 6
    assert s3.list_multipart_uploads(Bucket=registry.bucket).get("Uploads", []) == []
    obj = s3.get_object(Bucket=registry.bucket, Key=key)["Body"].read()
    assert hashlib.sha256(obj).hexdigest() == hashlib.sha256((model / "weights.safetensors").read_bytes()).hexdigest()
    assert verify(result.manifest, resumed, check_manifest_copy=False).ok


def test_resume_skips_finished_files_and_drops_leftovers(registry: Store, tmp_path: Path, s3: Any) -> None:
    model = write_model(tmp_path / "m", {"a.bin": 1000, "b.bin": 2000})
    prefix = registry.files_prefix("m", "1.0.0")
    # An earlier attempt left a.bin (with its sha256 metadata) and a file this content no longer has.
    a_sha = hashlib.sha256((model / "a.bin").read_bytes()).hexdigest()
    s3.put_object(
        Bucket=registry.bucket,
        Key=prefix + "a.bin",
        Body=(model / "a.bin").read_bytes(),
        Metadata={"sha256": a_sha},
    )
    s3.put_object(Bucket=registry.bucket, Key=prefix + "old.bin", Body=b"stale")

    result = publish(registry, model, "m", "1.0.0", journal_dir=tmp_path / "j")

    assert result.stats.files_skipped == 1
    assert result.stats.stale_removed == [prefix + "old.bin"]
    assert verify(result.manifest, registry, check_manifest_copy=False).ok


def test_existing_version_is_never_overwritten(registry: Store, tmp_path: Path) -> None:
    first = write_model(tmp_path / "v1", {"model.pt": 1234})
    publish(registry, first, "resnet", "1.0.0", journal_dir=tmp_path / "j")
    before = registry.get_bytes(registry.manifest_key("resnet", "1.0.0"))

    other = write_model(tmp_path / "v1b", {"model.pt": 999})
    with pytest.raises(VersionExistsError, match="versions are immutable"):
        publish(registry, other, "resnet", "1.0.0", journal_dir=tmp_path / "j")
    assert registry.get_bytes(registry.manifest_key("resnet", "1.0.0")) == before


def test_racing_publisher_loses_on_conditional_manifest_put(registry: Store, tmp_path: Path, s3: Any) -> None:
    model = write_model(tmp_path / "m", {"model.pt": 4096})
    manifest_key = registry.manifest_key("resnet", "2.0.0")
    rival = json.dumps({"rival": True}).encode()

    def rival_wins(params: dict[str, Any], **_: Any) -> None:
        # Another publisher's manifest lands after our existence check, just before our PUT.
        if params.get("Key") == manifest_key:
            s3.put_object(Bucket=registry.bucket, Key=manifest_key, Body=rival)

    registry.client.meta.events.register("before-parameter-build.s3.PutObject", rival_wins)
    with pytest.raises(VersionExistsError, match="published by someone else"):
        publish(registry, model, "resnet", "2.0.0", journal_dir=tmp_path / "j")
    assert s3.get_object(Bucket=registry.bucket, Key=manifest_key)["Body"].read() == rival


def test_conditional_put_supported_by_server(registry: Store) -> None:
    assert registry.put_if_absent("probe/x.json", b"{}") is True
    assert registry.put_if_absent("probe/x.json", b"{}") is False


def test_changed_content_after_interruption_starts_over(registry: Store, tmp_path: Path, s3: Any) -> None:
    model = write_model(tmp_path / "m", {"w.bin": 12 * MiB})
    transfer = TransferSettings(part_size=5 * MiB, multipart_threshold=5 * MiB, max_concurrency=1)

    def fail_second_part(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] == 2:
            raise ConnectionResetError("injected")

    registry.client.meta.events.register("before-parameter-build.s3.UploadPart", fail_second_part)
    with pytest.raises(UploadInterruptedError):
        publish(registry, model, "m", "1.0.0", transfer=transfer, journal_dir=tmp_path / "j")
    registry.client.meta.events.unregister("before-parameter-build.s3.UploadPart", fail_second_part)

    write_model(model, {"w.bin": 12 * MiB})  # new bytes: the old upload's part 1 must not be reused
    result = publish(registry, model, "m", "1.0.0", transfer=transfer, journal_dir=tmp_path / "j")
    assert result.stats.parts_reused == 0 and result.stats.parts_sent == 3
    assert s3.list_multipart_uploads(Bucket=registry.bucket).get("Uploads", []) == []  # old one aborted
    assert verify(result.manifest, registry, check_manifest_copy=False).ok
