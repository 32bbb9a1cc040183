"""A real MinIO on 127.0.0.1 for the session (the repository's own test server), and the edgefm CLI.

The workload runs in its own environment; the hub/site tooling it is exercised with (``edgefm models publish`` and
``models sync``) runs from the repository's environment, as it would in the edgefm-tools image.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
WORKLOAD = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tools.minio.server import MinioError, MinioServer, run_minio  # noqa: E402


@dataclass(frozen=True)
class Cli:
    python: Path

    def run(self, args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), "-m", "edgefm", *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=REPO_ROOT,
        )


@pytest.fixture(scope="session")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    # Not a skip: if the server cannot be built or started, the test must fail loudly.
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(run_minio(tmp_path_factory.mktemp("minio") / "data"))
        except MinioError as exc:
            pytest.fail(f"could not start MinIO: {exc}", pytrace=False)
        yield server


@pytest.fixture(scope="session")
def s3(minio: MinioServer) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=minio.endpoint_url,
        aws_access_key_id=minio.access_key,
        aws_secret_access_key=minio.secret_key,
        region_name="us-east-1",
    )


@pytest.fixture(scope="session")
def edgefm_cli() -> Cli:
    python = REPO_ROOT / ".venv" / "bin" / "python"
    if not python.is_file():
        pytest.fail(f"{python} is missing: run `make install` at the repository root first", pytrace=False)
    return Cli(python)


@pytest.fixture
def make_bucket(s3: Any) -> Callable[[str], str]:
    counter = iter(range(1_000_000))

    def make(stem: str) -> str:
        name = f"{stem}-{os.getpid()}-{next(counter)}"
        s3.create_bucket(Bucket=name)
        return name

    return make
