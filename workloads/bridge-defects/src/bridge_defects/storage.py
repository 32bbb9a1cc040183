"""The site's buckets as the FineTuning Job's environment describes them.

The Job sets ``EDGEFM_SITE_S3_ENDPOINT``, ``EDGEFM_SITE_S3_CA_BUNDLE`` (the site CA) and, per bucket role
(``DATASETS``, ``MODELS``, ``CHECKPOINTS``), ``EDGEFM_<ROLE>_BUCKET``, ``_ACCESS_KEY_ID`` and ``_SECRET_ACCESS_KEY``.
Each role gets its own client with its own credentials, all trusting the site CA only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

ROLES = ("DATASETS", "MODELS", "CHECKPOINTS")


class StorageError(RuntimeError):
    """The site storage is misconfigured or unreachable; the message is one line naming what is wrong."""


@dataclass(frozen=True)
class Bucket:
    """One site bucket and a client holding that role's credentials."""

    role: str
    name: str
    client: Any

    def keys(self, prefix: str) -> Iterator[str]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield str(obj["Key"])

    def download(self, key: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(self.name, key, str(dest))

    def upload(self, path: Path, key: str) -> None:
        self.client.upload_file(str(path), self.name, key)

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def get(self, key: str) -> bytes | None:
        try:
            body: bytes = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        return body

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[i : i + 1000]]
            self.client.delete_objects(Bucket=self.name, Delete={"Objects": chunk, "Quiet": True})


def bucket(role: str, environ: Mapping[str, str] | None = None) -> Bucket:
    """The bucket for ``role`` (DATASETS, MODELS or CHECKPOINTS) from the Job's environment."""
    env = os.environ if environ is None else environ
    if role not in ROLES:
        raise StorageError(f"unknown bucket role {role!r}; expected one of {', '.join(ROLES)}")
    endpoint = env.get("EDGEFM_SITE_S3_ENDPOINT", "")
    if not endpoint.startswith(("http://", "https://")):
        raise StorageError(f"EDGEFM_SITE_S3_ENDPOINT must be an http(s):// URL, got {endpoint!r}")
    name = env.get(f"EDGEFM_{role}_BUCKET", "")
    if not name:
        raise StorageError(f"EDGEFM_{role}_BUCKET is not set")
    ca = env.get("EDGEFM_SITE_S3_CA_BUNDLE") or None
    if endpoint.startswith("https://") and ca is not None and not Path(ca).is_file():
        raise StorageError(f"EDGEFM_SITE_S3_CA_BUNDLE={ca} is not a file")
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env.get(f"EDGEFM_{role}_ACCESS_KEY_ID") or None,
        aws_secret_access_key=env.get(f"EDGEFM_{role}_SECRET_ACCESS_KEY") or None,
        region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
        # The site CA, never the system store: the site's endpoint is signed by its own CA.
        verify=ca if endpoint.startswith("https://") and ca else True,
        config=Config(
            retries={"mode": "standard", "max_attempts": 5},
            s3={"addressing_style": "path"},
            connect_timeout=5,
            read_timeout=120,
        ),
    )
    return Bucket(role, name, client)
