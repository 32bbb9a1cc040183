"""The S3 client for one bucket: key layout, small JSON objects, listing, and error translation.

Bucket layout under the settings' prefix::

    <prefix>/<name>/<version>/files/<relative path>   model files
    <prefix>/<name>/<version>/manifest.json           written last: its presence makes a version visible
    <prefix>/<name>/channels/<channel>.json           channel pointers
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSLError,
)

from edgefm.registry.errors import NotFoundError, RegistryError, StorageError
from edgefm.registry.settings import BucketSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MANIFEST_NAME = "manifest.json"
# Object metadata (x-amz-meta-sha256) lets resume and sync skip files without re-reading them;
# verify never trusts it and always recomputes.
SHA256_META = "sha256"

_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
    "AuthorizationHeaderMalformed",
}
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}


def make_client(settings: BucketSettings, *, max_pool_connections: int = 10) -> S3Client:
    config = Config(
        region_name=settings.region,
        retries={"mode": "standard", "max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_pool_connections=max_pool_connections,
        s3={"addressing_style": settings.effective_addressing_style},
    )
    # An explicit session keeps settings for the registry and the mirror apart in one process.
    session = boto3.session.Session(
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key.get_secret_value() if settings.secret_access_key else None,
        aws_session_token=settings.session_token.get_secret_value() if settings.session_token else None,
        region_name=settings.region,
    )
    # Per client, not AWS_CA_BUNDLE: one sync process talks to the hub (public CA) and the site (private CA).
    verify = settings.ca_bundle if settings.ca_bundle else None
    return session.client("s3", endpoint_url=settings.endpoint_url, config=config, verify=verify)


def describe_error(exc: BaseException, settings: BucketSettings) -> RegistryError:
    """Turn a boto3/botocore exception into a one-line message naming what to fix."""
    p = settings.env_prefix
    if isinstance(exc, RegistryError):
        return exc
    if isinstance(exc, SSLError):
        trusted = f"the CA in {settings.ca_bundle}" if settings.ca_bundle else f"the system CAs (set {p}CA_BUNDLE)"
        return StorageError(f"TLS certificate of {settings.endpoint_url} is not trusted by {trusted}")
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ConnectionClosedError | ReadTimeoutError):
        endpoint = settings.endpoint_url or f"AWS S3 ({settings.region})"
        return StorageError(
            f"cannot reach S3 endpoint {endpoint} (check {p}ENDPOINT_URL and the network): {type(exc).__name__}"
        )
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StorageError(
            f"no S3 credentials for {settings.url}: set {p}ACCESS_KEY_ID and "
            f"{p}SECRET_ACCESS_KEY, or configure the AWS credential chain"
        )
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = str(err.get("Message", "")).rstrip(".")
        if code == "NoSuchBucket":
            return StorageError(
                f"bucket {settings.bucket!r} does not exist at {settings.endpoint_url or 'AWS S3'} (check {p}BUCKET)"
            )
        if code in _CREDENTIAL_CODES:
            return StorageError(
                f"credentials rejected by {settings.endpoint_url or 'AWS S3'} ({code}): check "
                f"{p}ACCESS_KEY_ID / {p}SECRET_ACCESS_KEY"
            )
        if code in {"AccessDenied", "403", "Forbidden"}:
            return StorageError(
                f"access denied to {settings.url} (wrong credentials or missing permission): {message or code}"
            )
        op = exc.operation_name
        return StorageError(f"S3 {op} on {settings.url} failed: {code} {message}".rstrip())
    if isinstance(exc, BotoCoreError):
        return StorageError(f"S3 client error for {settings.url}: {exc}")
    return RegistryError(f"{type(exc).__name__}: {exc}")


def is_not_found(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code", "")) in _NOT_FOUND_CODES


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


class Store:
    """One bucket + prefix. All methods raise :class:`RegistryError` subclasses, never botocore's."""

    def __init__(self, settings: BucketSettings, client: S3Client | None = None, *, max_pool_connections: int = 10):
        self.settings = settings
        self.client: S3Client = client or make_client(settings, max_pool_connections=max_pool_connections)
        self.bucket = settings.bucket

    # --- key layout -------------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.settings.prefix, *parts) if p)

    def root_prefix(self) -> str:
        return f"{self.settings.prefix}/" if self.settings.prefix else ""

    def model_prefix(self, name: str) -> str:
        return self._key(name) + "/"

    def version_prefix(self, name: str, version: str) -> str:
        return self._key(name, version) + "/"

    def files_prefix(self, name: str, version: str) -> str:
        return self._key(name, version, "files") + "/"

    def file_key(self, name: str, version: str, path: str) -> str:
        return self.files_prefix(name, version) + path

    def manifest_key(self, name: str, version: str) -> str:
        return self._key(name, version, MANIFEST_NAME)

    def channels_prefix(self, name: str) -> str:
        return self._key(name, "channels") + "/"

    def channel_key(self, name: str, channel: str) -> str:
        return self.channels_prefix(name) + f"{channel}.json"

    # --- operations -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Translate botocore exceptions raised inside the block."""
        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise describe_error(exc, self.settings) from exc

    def check(self) -> None:
        """Fail early with a clear message if the endpoint, credentials or bucket are wrong.

        ListObjectsV2 rather than HeadBucket: a HEAD error has no body, so a bad key and a missing
        permission would both read as a bare 403.
        """
        with self.errors():
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.root_prefix(), MaxKeys=1)

    def head(self, key: str) -> dict[str, Any] | None:
        """HeadObject's response, or None when the object does not exist."""
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise describe_error(exc, self.settings) from exc
        except BotoCoreError as exc:
            raise describe_error(exc, self.settings) from exc

    def holds(self, obj: ObjectInfo | None, size: int, sha256: str) -> bool:
        """Whether a listed object already has this content, going by size and sha256 metadata.

        Cheap (one HEAD), so resume and sync use it to skip files; verify does not trust it.
        """
        if obj is None or obj.size != size:
            return False
        head = self.head(obj.key) or {}
        return bool(head.get("Metadata", {}).get(SHA256_META) == sha256)

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def get_bytes(self, key: str) -> bytes | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            with contextlib.closing(body):
                data: bytes = body.read()
                return data
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise describe_error(exc, self.settings) from exc
        except BotoCoreError as exc:
            raise describe_error(exc, self.settings) from exc

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/json") -> None:
        with self.errors():
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def put_if_absent(self, key: str, data: bytes, *, content_type: str = "application/json") -> bool:
        """PUT with ``If-None-Match: *``; False when the object already exists.

        Servers without conditional writes answer NotImplemented; then fall back to check-then-put,
        which still refuses an existing object but leaves a small window for a racing writer.
        """
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*")
            return True
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
                return False
            if code not in {"NotImplemented", "501"}:
                raise describe_error(exc, self.settings) from exc
        except BotoCoreError as exc:
            raise describe_error(exc, self.settings) from exc
        if self.exists(key):
            return False
        self.put_bytes(key, data, content_type=content_type)
        return True

    def delete(self, keys: list[str]) -> None:
        with self.errors():
            for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
                batch = keys[i : i + 1000]
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        with self.errors():
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(obj["Key"], obj["Size"])

    def list_dirs(self, prefix: str) -> list[str]:
        """The immediate "subdirectory" names under ``prefix`` (which ends in '/')."""
        names: list[str] = []
        with self.errors():
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for cp in page.get("CommonPrefixes", []):
                    names.append(cp["Prefix"][len(prefix) :].rstrip("/"))
        return names

    def open_stream(self, key: str) -> Any:
        """A streaming body (``.iter_chunks()``/``.read()``); raises NotFoundError when absent."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as exc:
            if is_not_found(exc):
                raise NotFoundError(f"s3://{self.bucket}/{key} does not exist") from None
            raise describe_error(exc, self.settings) from exc
        except BotoCoreError as exc:
            raise describe_error(exc, self.settings) from exc
