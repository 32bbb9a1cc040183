"""The registry client against MinIO serving HTTPS with a private CA, as a site's storage does."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefm.registry.errors import StorageError
from edgefm.registry.settings import BucketSettings
from edgefm.registry.store import Store
from tools.minio.server import MinioServer, run_minio

pytestmark = pytest.mark.s3


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MinioServer, Path]]:
    """A private CA and a server certificate for 127.0.0.1, made with openssl."""
    root = tmp_path_factory.mktemp("tls")
    certs = root / "certs"
    (certs / "CAs").mkdir(parents=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=edgefm test site CA",
             "-keyout", "ca.key", "-out", "CAs/ca.crt", cwd=certs)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "private.key",
             "-out", "server.csr", cwd=certs)  # fmt: skip
    (certs / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "CAs/ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "san.ext", "-out", "public.crt", cwd=certs)  # fmt: skip
    for scratch in ("ca.key", "server.csr", "san.ext"):
        (certs / scratch).unlink()
    with run_minio(root / "data", certs_dir=certs) as server:
        yield server, certs / "CAs" / "ca.crt"


def _settings(server: MinioServer, ca: Path | None) -> BucketSettings:
    return BucketSettings(
        bucket="tls-models",
        endpoint_url=server.endpoint_url,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        ca_bundle=str(ca) if ca else None,
        max_attempts=1,
    )


def test_private_ca_is_trusted_when_given(tls_minio: tuple[MinioServer, Path]) -> None:
    server, ca = tls_minio
    assert server.endpoint_url.startswith("https://")
    store = Store(_settings(server, ca))
    store.client.create_bucket(Bucket="tls-models")
    store.client.put_object(Bucket="tls-models", Key="k", Body=b"over TLS")
    assert store.client.get_object(Bucket="tls-models", Key="k")["Body"].read() == b"over TLS"


def test_untrusted_certificate_is_a_clear_error(tls_minio: tuple[MinioServer, Path]) -> None:
    server, _ = tls_minio
    with pytest.raises(StorageError, match=r"TLS certificate of https://127\.0\.0\.1:\d+ is not trusted"):
        Store(_settings(server, None)).check()


def test_ca_bundle_comes_from_the_environment() -> None:
    settings = BucketSettings.from_env(
        "EDGEFM_MIRROR_",
        environ={"EDGEFM_MIRROR_BUCKET": "site-models", "EDGEFM_MIRROR_CA_BUNDLE": "/etc/edgefm/ca/ca.crt"},
    )
    assert settings.ca_bundle == "/etc/edgefm/ca/ca.crt"
