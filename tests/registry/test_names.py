"""Validation and ordering without a server."""

from __future__ import annotations

import pytest

from edgefm.registry.errors import InvalidInputError
from edgefm.registry.names import SemVer, validate_channel, validate_name, validate_version
from edgefm.registry.settings import BucketSettings, TransferSettings


@pytest.mark.parametrize("name", ["vit-bridge", "a", "llama3.1-8b", "m_1"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Vit", "-a", "a-", "a/b", "a..b", "x" * 64, "a b"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid model name"):
        validate_name(name)


@pytest.mark.parametrize("version", ["1.0.0", "0.1.0-rc.1", "2.0.0+build.7", "1.0.0-alpha.beta-1+x"])
def test_valid_versions(version: str) -> None:
    assert validate_version(version) == version


def test_invalid_versions_explain() -> None:
    with pytest.raises(InvalidInputError, match=r"drop the leading 'v'"):
        validate_version("v1.2.3")
    for bad in ["1.2", "01.2.3", "1.2.3-", "latest", "1.2.3.4"]:
        with pytest.raises(InvalidInputError, match="expected semantic version"):
            validate_version(bad)


def test_channel_names() -> None:
    assert validate_channel("canary") == "canary"
    with pytest.raises(InvalidInputError, match="invalid channel"):
        validate_channel("Stable")


def test_semver_precedence() -> None:
    order = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0",
        "1.2.0",
        "1.10.0",
    ]
    assert [v.text for v in sorted(SemVer.parse(t) for t in reversed(order))] == order


def test_settings_one_line_errors_and_env() -> None:
    with pytest.raises(InvalidInputError, match=r"^bucket \(EDGEFM_MIRROR_BUCKET\): invalid bucket name"):
        BucketSettings.build(bucket="Bad_Bucket", env_prefix="EDGEFM_MIRROR_")
    with pytest.raises(InvalidInputError, match="set EDGEFM_REGISTRY_BUCKET"):
        BucketSettings.from_env(environ={})
    s = BucketSettings.from_env(
        environ={
            "EDGEFM_REGISTRY_BUCKET": "hub",
            "EDGEFM_REGISTRY_PREFIX": "/fm/",
            "EDGEFM_REGISTRY_ENDPOINT_URL": "http://minio:9000/",
            "EDGEFM_REGISTRY_SECRET_ACCESS_KEY": "s3cr3t",
        },
        region="eu-west-1",
    )
    assert (s.bucket, s.prefix, s.endpoint_url, s.region) == ("hub", "fm", "http://minio:9000", "eu-west-1")
    assert s.effective_addressing_style == "path"  # MinIO hosts rarely have wildcard DNS
    assert "s3cr3t" not in repr(s)
    assert BucketSettings(bucket="hub").effective_addressing_style == "auto"


def test_part_size_grows_for_huge_files() -> None:
    t = TransferSettings()
    assert t.part_size_for(100 * 1024**2) == t.part_size
    assert t.part_size_for(1024**4) * 10_000 >= 1024**4
