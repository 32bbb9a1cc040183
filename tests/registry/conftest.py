"""A real MinIO on 127.0.0.1 for the whole session, and one fresh bucket per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from edgefm.registry.settings import BucketSettings
from edgefm.registry.store import Store
from tools.minio.server import MinioError, MinioServer, run_minio


@pytest.fixture(scope="session")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    # Not a skip: if the server cannot be built or started, every S3 test must fail loudly.
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(run_minio(tmp_path_factory.mktemp("minio") / "data"))
        except MinioError as exc:
            pytest.fail(f"could not start MinIO for the S3 tests: {exc}", pytrace=False)
        yield server


@pytest.fixture(scope="session")
def s3(minio: MinioServer) -> Any:
    """A raw boto3 client for setting up and tampering with buckets."""
    return boto3.client(
        "s3",
        endpoint_url=minio.endpoint_url,
        aws_access_key_id=minio.access_key,
        aws_secret_access_key=minio.secret_key,
        region_name="us-east-1",
    )


@pytest.fixture
def make_bucket(s3: Any) -> Callable[[], str]:
    def make() -> str:
        name = f"t-{uuid.uuid4().hex[:16]}"
        s3.create_bucket(Bucket=name)
        return name

    return make


@pytest.fixture
def settings_for(minio: MinioServer) -> Callable[..., BucketSettings]:
    def build(bucket: str, **extra: Any) -> BucketSettings:
        values: dict[str, Any] = {
            "bucket": bucket,
            "endpoint_url": minio.endpoint_url,
            "access_key_id": minio.access_key,
            "secret_access_key": minio.secret_key,
            "max_attempts": 2,
        }
        values.update(extra)
        return BucketSettings.model_validate(values)

    return build


@pytest.fixture
def registry(make_bucket: Callable[[], str], settings_for: Callable[..., BucketSettings]) -> Store:
    return Store(settings_for(make_bucket()), max_pool_connections=16)


@pytest.fixture
def cli_env(minio: MinioServer, registry: Store, tmp_path: Path) -> dict[str, str]:
    """Environment for `edgefm models ...` pointing at the test registry bucket."""
    return {
        "EDGEFM_REGISTRY_BUCKET": registry.bucket,
        "EDGEFM_REGISTRY_ENDPOINT_URL": minio.endpoint_url,
        "EDGEFM_REGISTRY_ACCESS_KEY_ID": minio.access_key,
        "EDGEFM_REGISTRY_SECRET_ACCESS_KEY": minio.secret_key,
        "EDGEFM_REGISTRY_MAX_ATTEMPTS": "2",
        "EDGEFM_RESUME_DIR": str(tmp_path / "journal"),
    }
