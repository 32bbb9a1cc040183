"""Where a registry (hub) or mirror (site) bucket lives, and how to talk to it.

One model for both sides; they differ only in the environment-variable prefix the CLI reads:
``EDGEFM_REGISTRY_*`` for the hub registry and ``EDGEFM_MIRROR_*`` for a site's mirror.
Credentials are optional: unset, boto3's standard chain applies (AWS_* env vars, profiles,
instance/IRSA roles).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from edgefm.registry.errors import InvalidInputError

REGISTRY_ENV_PREFIX = "EDGEFM_REGISTRY_"
MIRROR_ENV_PREFIX = "EDGEFM_MIRROR_"

AddressingStyle = Literal["auto", "path", "virtual"]

# S3 bucket naming rules (3-63 chars, lower-case, digits, '.', '-'), which MinIO also enforces.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MiB = 1024 * 1024


class BucketSettings(BaseModel):
    """An S3 or S3-compatible (MinIO) bucket plus key prefix."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bucket: str
    prefix: str = "models"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    # None: path-style for a custom endpoint (MinIO hosts rarely have wildcard DNS), auto for AWS.
    addressing_style: AddressingStyle | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    # botocore "standard" retry mode: throttling, 5xx and connection errors, with backoff.
    max_attempts: int = Field(default=5, ge=1, le=20)
    # PEM file of the CA that signed the endpoint's certificate (a site's private CA); None: system CAs.
    ca_bundle: str | None = None
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=60.0, gt=0)
    # Which env prefix these came from, so error messages name the variable to fix.
    env_prefix: str = REGISTRY_ENV_PREFIX

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, v: str) -> str:
        if not _BUCKET_RE.match(v) or ".." in v:
            raise ValueError(f"invalid bucket name {v!r} (3-63 lower-case letters, digits, '.', '-')")
        return v

    @field_validator("prefix")
    @classmethod
    def _strip_prefix(cls, v: str) -> str:
        # Normalised to no leading/trailing '/', so keys are always "<prefix>/<name>/...".
        return v.strip("/")

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        assert v is not None
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"invalid endpoint URL {v!r}: expected http(s)://host[:port]")
        return v.rstrip("/")

    @property
    def effective_addressing_style(self) -> AddressingStyle:
        if self.addressing_style is not None:
            return self.addressing_style
        return "path" if self.endpoint_url else "auto"

    @property
    def url(self) -> str:
        """``s3://bucket/prefix`` for messages."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def where(self) -> str:
        """The bucket and endpoint, for one-line messages."""
        return f"{self.url} at {self.endpoint_url or 'AWS S3 (' + self.region + ')'}"

    @classmethod
    def build(cls, **values: object) -> BucketSettings:
        """Validate, turning pydantic's multi-line report into a one-line :class:`InvalidInputError`."""
        try:
            return cls.model_validate({k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "settings"
            prefix = values.get("env_prefix", REGISTRY_ENV_PREFIX)
            msg = first["msg"].removeprefix("Value error, ")
            raise InvalidInputError(f"{field} ({prefix}{field.upper()}): {msg}") from None

    @classmethod
    def from_env(
        cls,
        env_prefix: str = REGISTRY_ENV_PREFIX,
        environ: Mapping[str, str] | None = None,
        **overrides: object,
    ) -> BucketSettings:
        """Read ``<env_prefix>BUCKET``, ``PREFIX``, ``ENDPOINT_URL``, ``REGION``, ``ADDRESSING_STYLE``,
        ``ACCESS_KEY_ID``, ``SECRET_ACCESS_KEY``, ``SESSION_TOKEN``, ``MAX_ATTEMPTS``; ``overrides`` win."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {"env_prefix": env_prefix}
        for field in cls.model_fields:
            raw = env.get(env_prefix + field.upper())
            if raw not in (None, "") and field != "env_prefix":
                values[field] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "bucket" not in values:
            raise InvalidInputError(f"no bucket configured: set {env_prefix}BUCKET or pass the bucket option")
        return cls.build(**values)


class TransferSettings(BaseModel):
    """How uploads and copies are split and parallelised."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # S3 needs parts of at least 5 MiB (except the last) and at most 10,000 parts per object.
    part_size: int = Field(default=16 * MiB, ge=5 * MiB, le=5 * 1024 * MiB)
    # Files at least this big go multipart; smaller ones are a single PUT.
    multipart_threshold: int = Field(default=32 * MiB, ge=5 * MiB)
    max_concurrency: int = Field(default=8, ge=1, le=64)

    def part_size_for(self, size: int) -> int:
        """The part size for a file: the configured one, grown so the file fits in 10,000 parts."""
        return max(self.part_size, -(-size // 10_000))
