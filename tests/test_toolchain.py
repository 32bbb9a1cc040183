"""Unit tests of the engine bootstrap's pure parts and of the engine environment (no Go, no engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgefm.ops import engine
from edgefm.ops.engine import LANGUAGE_HOST, ArtefactStatus, Manifest, SdkPins, read_sdk_pins, toolchain_dir
from tools.engine.build import CLI, Candidate, cli_is_compatible, load_sources, parse_semver
from tools.gobuild import BuildError, json_stream


def test_parse_semver() -> None:
    assert parse_semver("v3.274.1") == (3, 274, 1)
    assert parse_semver("3.272.0-alpha.1+dirty") == (3, 272, 0)
    with pytest.raises(ValueError):
        parse_semver("3.272")


@pytest.mark.parametrize(
    ("cli", "sdk", "ok"),
    [
        ("v3.272.0", "3.272.0", True),
        ("v3.272.5", "3.272.0", True),
        ("v3.274.1", "3.272.0", True),
        ("v3.271.9", "3.272.0", False),
        ("v4.0.0", "3.272.0", False),
        ("garbage", "3.272.0", False),
    ],
)
def test_cli_compatibility(cli: str, sdk: str, ok: bool) -> None:
    assert cli_is_compatible(cli, sdk) is ok


def test_candidate_release_version() -> None:
    assert Candidate("m", "v3.274.1").release_version() == "3.274.1"
    pseudo = "v4.0.0-20260115033456-f47bc2d6f199"
    assert Candidate("m", pseudo, release="4.25.0").release_version() == "4.25.0"
    with pytest.raises(BuildError, match="pseudo-version"):
        Candidate("m", pseudo).release_version()


def test_sources_cover_every_pinned_sdk() -> None:
    """An SDK pin without a Go module source for its engine part fails here, not at build time."""
    pins = read_sdk_pins()
    sources = load_sources(pins)
    assert set(sources) == {CLI, LANGUAGE_HOST, *pins.plugins}
    for name, src in sources.items():
        assert src.candidates or src.unavailable, name
        for cand in src.candidates:
            assert cand.version.startswith("v"), cand  # exact module versions only
            cand.release_version()


def test_sources_missing_entry_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text('[cli."1.0.0"]\ncandidates = [{ module = "m", version = "v1.0.0" }]\n')
    with pytest.raises(BuildError, match=r'no \[cli."3.0.0"\] entry'):
        load_sources(SdkPins("3.0.0", {}), path)


def test_sources_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "sources.toml"
    path.write_text(
        '[cli."3.0.0"]\ncandidates = [{ module = "m", version = "v3.0.0", verison = "x" }]\n'
        '[language-python."3.0.0"]\nunavailable = "no"\n'
    )
    with pytest.raises(BuildError, match="unknown keys"):
        load_sources(SdkPins("3.0.0", {}), path)


def testjson_stream() -> None:
    assert [o["Path"] for o in json_stream('{"Path": "a"}\n{"Path": "b"}\n')] == ["a", "b"]
    assert list(json_stream("  \n")) == []


def test_toolchain_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EDGEFM_TOOLCHAIN_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert toolchain_dir() == (tmp_path / "xdg" / "edgefm" / "toolchain").resolve()
    monkeypatch.setenv("EDGEFM_TOOLCHAIN_DIR", str(tmp_path / "tc"))
    assert toolchain_dir() == (tmp_path / "tc").resolve()


def _manifest(tmp_path: Path) -> Manifest:
    return Manifest(
        mode="built",
        bin_dir=tmp_path / "bin",
        pulumi=tmp_path / "bin" / "pulumi",
        pulumi_home=tmp_path / "home",
        cli_version="v3.274.1",
        sdk=SdkPins("3.272.0", {"kubernetes": "4.34.2"}),
        artefacts={
            CLI: ArtefactStatus("3.272.0", "ready", built_from="x@v3.274.1", substitute="newer"),
            "command": ArtefactStatus("1.2.1", "unavailable", reason="not served"),
        },
    )


def test_manifest_round_trip(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert manifest.has_plugin(CLI)
    assert not manifest.has_plugin("command")


def test_engine_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PULUMI_BACKEND_URL", "https://api.pulumi.com")  # another project's: ignored
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "theirs")
    monkeypatch.delenv("EDGEFM_BACKEND_URL", raising=False)
    monkeypatch.delenv("EDGEFM_CONFIG_PASSPHRASE", raising=False)
    monkeypatch.setenv("TRACEPARENT", "00-abc-def-01")
    manifest = _manifest(tmp_path)
    env = engine.engine_overrides(manifest=manifest, repo=tmp_path)
    assert env["PATH"].split(":")[0] == str(tmp_path / "bin")
    assert env["PULUMI_HOME"] == str(tmp_path / "home")
    assert env["PULUMI_BACKEND_URL"] == (tmp_path / ".state" / "backend").resolve().as_uri()
    assert (tmp_path / ".state" / "backend").is_dir()
    assert env["PULUMI_CONFIG_PASSPHRASE"] == engine.DEFAULT_PASSPHRASE
    assert env["PULUMI_SKIP_UPDATE_CHECK"] == "true"
    assert env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    assert env["PULUMI_IGNORE_AMBIENT_PLUGINS"] == "true"
    assert env["TRACEPARENT"] == ""
    assert "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK" not in env

    monkeypatch.setenv("EDGEFM_BACKEND_URL", "file:///elsewhere")
    monkeypatch.setenv("EDGEFM_CONFIG_PASSPHRASE", "chosen")
    env = engine.engine_overrides(manifest=manifest, repo=tmp_path)
    assert env["PULUMI_BACKEND_URL"] == "file:///elsewhere"
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "chosen"
    explicit = engine.engine_overrides(manifest=manifest, repo=tmp_path, backend_url="file:///x", passphrase="p")
    assert (explicit["PULUMI_BACKEND_URL"], explicit["PULUMI_CONFIG_PASSPHRASE"]) == ("file:///x", "p")

    full = engine.engine_env(manifest=manifest, repo=tmp_path)
    assert "TRACEPARENT" not in full
    assert full["PULUMI_HOME"] == str(tmp_path / "home")


def test_engine_overrides_python(tmp_path: Path) -> None:
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").touch()
    env = engine.engine_overrides(manifest=_manifest(tmp_path), repo=tmp_path)
    assert env["PULUMI_PYTHON_CMD"] == str(tmp_path / ".venv" / "bin" / "python")


def test_require_manifest_says_what_to_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEFM_TOOLCHAIN_DIR", str(tmp_path / "empty"))
    with pytest.raises(engine.EngineNotReady, match="make tools"):
        engine.require_manifest()


def test_require_manifest_rejects_other_sdk_versions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tools.engine.build import Layout, _write_manifest

    layout = Layout(tmp_path / "tc")
    monkeypatch.setenv("EDGEFM_TOOLCHAIN_DIR", str(layout.root))
    _write_manifest(layout, _manifest(tmp_path))  # made for kubernetes only, not the venv's pins
    with pytest.raises(engine.EngineNotReady, match="make tools"):
        engine.require_manifest()
