"""The command line end to end, and its one-line error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefm.registry.store import Store
from tests.registry.helpers import run, write_model
from tools.minio.server import free_port

pytestmark = pytest.mark.s3


def one_line_error(result_stderr: str) -> str:
    lines = result_stderr.strip().splitlines()
    assert len(lines) == 1, result_stderr
    assert "Traceback" not in result_stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_publish_promote_list(tmp_path: Path, cli_env: dict[str, str], registry: Store) -> None:
    model = write_model(tmp_path / "vit", {"1/model.onnx": 3000, "config.pbtxt": 100})
    pub = run(["publish", str(model), "--name", "vit-bridge", "--version", "1.0.0", "--no-progress"], cli_env)
    assert pub.exit_code == 0, pub.output
    assert "published vit-bridge 1.0.0" in pub.stdout and "2 files" in pub.stdout

    again = run(["publish", str(model), "--name", "vit-bridge", "--version", "1.0.0"], cli_env)
    assert again.exit_code == 2
    assert "already exists" in one_line_error(again.stderr)

    assert run(["promote", "vit-bridge", "1.0.0", "--channel", "stable"], cli_env).stdout.strip() == (
        "vit-bridge stable -> 1.0.0"
    )
    models = run(["list"], cli_env)
    assert models.exit_code == 0 and "vit-bridge" in models.stdout and "stable=1.0.0" in models.stdout
    versions = run(["list", "vit-bridge"], cli_env)
    assert versions.exit_code == 0
    row = next(line for line in versions.stdout.splitlines() if line.strip().startswith("1.0.0"))
    assert "onnx" in row and "stable" in row


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["publish", ".", "--name", "Bad Name", "--version", "1.0.0"], "invalid model name 'Bad Name'"),
        (["publish", ".", "--name", "vit", "--version", "1.0"], "invalid version '1.0'"),
        (["promote", "vit", "1.0.0", "--channel", "Prod!"], "invalid channel 'Prod!'"),
        (["list", "nope"], "unknown model 'nope'"),
        (["verify", "nope", "1.0.0"], "unknown model 'nope'"),
        (["sync", "nope", "--channel", "stable", "--to-bucket", "site"], "unknown model 'nope'"),
        (["sync", "vit", "--to-bucket", "site"], "give exactly one of --version or --channel"),
    ],
)
def test_input_errors(args: list[str], message: str, cli_env: dict[str, str]) -> None:
    result = run(args, cli_env)
    assert result.exit_code == 2
    assert message in one_line_error(result.stderr)


def test_unknown_version_and_channel(tmp_path: Path, cli_env: dict[str, str]) -> None:
    model = write_model(tmp_path / "m", {"model.onnx": 10})
    assert run(["publish", str(model), "--name", "vit", "--version", "1.0.0"], cli_env).exit_code == 0
    version = run(["verify", "vit", "2.0.0"], cli_env)
    assert "unknown version vit 2.0.0 (versions: 1.0.0)" in one_line_error(version.stderr)
    channel = run(["sync", "vit", "--channel", "stable", "--to-bucket", "site-bucket"], cli_env)
    assert "model 'vit' has no channel 'stable'" in one_line_error(channel.stderr)


def test_wrong_credentials(cli_env: dict[str, str]) -> None:
    result = run(["list"], {**cli_env, "EDGEFM_REGISTRY_SECRET_ACCESS_KEY": "not-the-secret"})
    assert result.exit_code == 2
    line = one_line_error(result.stderr)
    assert "credentials rejected" in line and "EDGEFM_REGISTRY_SECRET_ACCESS_KEY" in line


def test_missing_bucket(tmp_path: Path, cli_env: dict[str, str]) -> None:
    model = write_model(tmp_path / "m", {"model.onnx": 10})
    env = {**cli_env, "EDGEFM_REGISTRY_BUCKET": "no-such-bucket-here"}
    for args in (["list"], ["publish", str(model), "--name", "vit", "--version", "1.0.0"]):
        result = run(args, env)
        assert result.exit_code == 2
        assert "bucket 'no-such-bucket-here' does not exist" in one_line_error(result.stderr)


def test_unreachable_endpoint(cli_env: dict[str, str]) -> None:
    port = free_port()  # bound and released: nothing listens there
    result = run(["list", "vit"], {**cli_env, "EDGEFM_REGISTRY_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    assert result.exit_code == 2
    line = one_line_error(result.stderr)
    assert f"cannot reach S3 endpoint http://127.0.0.1:{port}" in line
