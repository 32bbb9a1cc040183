"""Config input, strictly: any file is read into typed settings or refused with one line per problem, each at
the exact key; nothing is coerced, guessed or half-read, and no input yields a traceback (property-based)."""

from __future__ import annotations

import base64
import codecs
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgefm.model import secure, yamlfile
from edgefm.model.config import SiteSpec
from edgefm.model.fields import PATTERN_WORDS
from edgefm.model.placement import load_policy, resolve
from edgefm.model.problems import SHOWN_PROBLEMS, ConfigError, Problem, summary
from edgefm.model.stacks import check_fleet, parse_hub, parse_site, read_stack_file
from edgefm.ops.engine import DEFAULT_PASSPHRASE
from tests.harness import PLACEMENT, STACKS

SITE_FILE = STACKS / "Pulumi.site-bridge-north.yaml"
HUB_FILE = STACKS / "Pulumi.hub.yaml"
POLICY = load_policy(PLACEMENT)


def problems_of(path: Path, passphrase: str | None = None) -> list[str]:
    try:
        raw = read_stack_file(path, passphrase)
        parse_site(path.name.removeprefix("Pulumi.").removesuffix(".yaml"), raw, env={})
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    return []


def write(tmp_path: Path, content: bytes | str, stack: str = "site-example") -> Path:
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def only(problems: list[str]) -> str:
    assert len(problems) == 1, problems
    assert "\n" not in problems[0] and "Traceback" not in problems[0]
    return problems[0]


# --- files that cannot be read, decoded or parsed -------------------------------------------------------


def test_the_sample_stack_files_read_and_decrypt() -> None:
    for path in sorted(STACKS.glob("Pulumi.*.yaml")):
        raw = read_stack_file(path, DEFAULT_PASSPHRASE)
        secrets = [v for v in raw.values() if v.secret]
        assert secrets and all(isinstance(v.value, str) and v.value for v in secrets), path.name


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\xff\xfe\x00\xd8a\x00", "is not valid UTF-16-LE text"),
        ("config:\n  edgefm:site: {name: caf\u00e9}\n".encode("latin-1"), "is not UTF-8 text: byte 0xe9 at offset"),
        (b"\x00\x01\x02\x03binary", "is not valid YAML"),
        (b"config: [unclosed", "is not valid YAML: expected ',' or ']'"),
        (b"config:\n\tedgefm:site: {}\n", "is not valid YAML"),
        (b"config:\n  edgefm:site: {name: a}\n  edgefm:site: {name: b}\n", "key 'edgefm:site' is given twice"),
        (b"a: &x {b: 1}\nconfig: *x\n", "aliases (*x) are not allowed"),
        (b"config: {when: 2023-02-30}\n", "is not valid YAML"),
        (b"- just\n- a list\n", "must be a mapping with a `config:` key"),
        (b"config: [1, 2]\n", "must be a mapping of config keys"),
        (b"config:\n  ? [a, b]\n  : 1\n", "a mapping key must be a plain value"),
        (b"config:\n  7: x\n", "config keys are text"),
    ],
)
def test_unreadable_files_are_one_line_each(tmp_path: Path, content: bytes, fragment: str) -> None:
    line = only(problems_of(write(tmp_path, content)))
    assert line.startswith("site-example: ") and fragment in line


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-32"])
def test_yaml_in_any_unicode_encoding_with_its_mark_is_read(tmp_path: Path, codec: str) -> None:
    text = SITE_FILE.read_text()
    path = write(tmp_path, text.encode(codec), stack="site-bridge-north")
    assert codecs.lookup(codec)  # the encodings YAML allows
    assert problems_of(path) == []


def test_missing_directory_and_oversized_files(tmp_path: Path) -> None:
    assert "not found" in only(problems_of(tmp_path / "Pulumi.site-gone.yaml"))
    (tmp_path / "Pulumi.site-dir.yaml").mkdir()
    assert "is a directory" in only(problems_of(tmp_path / "Pulumi.site-dir.yaml"))
    big = write(tmp_path, b"#" * (yamlfile.MAX_BYTES + 1))
    assert "is larger than 1024 KiB" in only(problems_of(big))


def test_a_file_that_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, SITE_FILE.read_bytes())

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(self))

    # Tests run as root here, which reads any file whatever its mode: the refusal is simulated.
    monkeypatch.setattr(Path, "open", refuse)
    assert "cannot be read: permission denied" in only(problems_of(path))
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    assert "cannot be read: Input/output error" in only(problems_of(path))


def test_placement_files_are_read_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "placement.yaml"
    path.write_bytes(b"defaults: {}\ndefaults: {}\n")
    with pytest.raises(ConfigError) as exc:
        load_policy(path)
    assert "placement file is not valid YAML: key 'defaults' is given twice" in str(exc.value)


# --- secure values ---------------------------------------------------------------------------------------


def test_secure_values_must_have_pulumis_form(tmp_path: Path) -> None:
    text = SITE_FILE.read_text().replace("secure: v1:EKBuVPPZQu2JmTuP:", "secure: v2:EKBuVPPZQu2JmTuP:")
    line = only(problems_of(write(tmp_path, text, "site-bridge-north")))
    assert line.startswith("site-bridge-north: edgefm:sshPrivateKey: secure value is not a Pulumi secret")
    bad_nonce = SITE_FILE.read_text().replace("secure: v1:EKBuVPPZQu2JmTuP:", "secure: v1:AAAA:")
    assert "its nonce is 3 bytes, not 12" in only(problems_of(write(tmp_path, bad_nonce, "site-bridge-north")))
    extra = "config:\n  edgefm:kubeconfig: {secure: 'v1:AAAAAAAAAAAAAAAA:AAAA', note: x}\n"
    assert "`secure:` stands alone" in only(problems_of(write(tmp_path, extra)))


def test_secure_values_are_decrypted_with_the_passphrase(tmp_path: Path) -> None:
    assert problems_of(SITE_FILE, DEFAULT_PASSPHRASE) == []
    wrong = only(problems_of(SITE_FILE, "not-the-passphrase"))
    assert wrong.startswith("site-bridge-north: encryptionsalt: the passphrase does not open this stack's secrets")


def test_a_secure_value_another_stack_encrypted_does_not_decrypt(tmp_path: Path) -> None:
    # The hub's ciphertext under this site's salt: well formed, but not this stack's key.
    hub_value = yaml.safe_load(HUB_FILE.read_text())["config"]["edgefm:kubeconfig"]["secure"]
    site = yaml.safe_load(SITE_FILE.read_text())
    site["config"]["edgefm:sshPrivateKey"]["secure"] = hub_value
    path = write(tmp_path, yaml.safe_dump(site), "site-bridge-north")
    assert problems_of(path) == []  # the form is right: without the passphrase nothing more can be said
    line = only(problems_of(path, DEFAULT_PASSPHRASE))
    assert line == (
        "site-bridge-north: edgefm:sshPrivateKey: secure value does not decrypt with the configured passphrase"
    )


def test_tampered_ciphertext_and_missing_salt(tmp_path: Path) -> None:
    site = yaml.safe_load(SITE_FILE.read_text())
    value = site["config"]["edgefm:sshPrivateKey"]["secure"]
    version, nonce, ciphertext = value.split(":")
    flipped = bytearray(base64.b64decode(ciphertext))
    flipped[0] ^= 1
    site["config"]["edgefm:sshPrivateKey"]["secure"] = f"{version}:{nonce}:{base64.b64encode(flipped).decode()}"
    path = write(tmp_path, yaml.safe_dump(site), "site-bridge-north")
    assert "does not decrypt" in only(problems_of(path, DEFAULT_PASSPHRASE))
    del site["encryptionsalt"]
    path = write(tmp_path, yaml.safe_dump(site), "site-bridge-north")
    assert "secure values but no encryptionsalt" in only(problems_of(path, DEFAULT_PASSPHRASE))


def test_secure_round_trip_with_pulumis_scheme() -> None:
    key = secure.stack_key(yaml.safe_load(SITE_FILE.read_text())["encryptionsalt"], DEFAULT_PASSPHRASE)
    value = yaml.safe_load(SITE_FILE.read_text())["config"]["edgefm:sshPrivateKey"]["secure"]
    assert secure.decrypt(key, value).startswith("-----BEGIN OPENSSH PRIVATE KEY-----")


# --- names the hub reserves ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hub", "edgefm"])
def test_reserved_site_names(name: str) -> None:
    spec = yaml.safe_load(SITE_FILE.read_text())["config"]["edgefm:site"]
    with pytest.raises(ValueError, match=f"site name '{name}' is reserved by the hub"):
        SiteSpec.model_validate({**spec, "name": name})


def test_a_site_whose_buckets_would_shadow_the_registry(tmp_path: Path) -> None:
    hub = yaml.safe_load(HUB_FILE.read_text())
    hub["config"]["edgefm:hub"]["registry"]["bucket"] = "bridge-north-models"
    (tmp_path / HUB_FILE.name).write_text(yaml.safe_dump(hub))
    shards = sorted(HUB_FILE.parent.glob("Pulumi.hub-access-*.yaml"))  # a hub with sites needs its shards
    paths = [tmp_path / HUB_FILE.name, SITE_FILE, *shards]
    report = check_fleet(paths, POLICY, env={})
    assert [str(p) for p in report.problems] == [
        "site-bridge-north: edgefm:site.name: site name 'bridge-north' is reserved by the hub: its registry bucket "
        "bridge-north-models begins with it, and this site's buckets (bridge-north-models, ...) would be taken "
        "for the registry"
    ]
    assert check_fleet([HUB_FILE, SITE_FILE, *shards], POLICY, env={}).problems == []


# --- exact keys, words and counts ------------------------------------------------------------------------


def test_every_pattern_the_models_use_is_explained_in_words() -> None:
    from pydantic import BaseModel

    from edgefm.model import config, placement, profile

    patterns: set[str] = set()

    def collect(schema: Any) -> None:
        if isinstance(schema, dict):
            if "pattern" in schema:
                patterns.add(schema["pattern"])
            for v in schema.values():
                collect(v)
        elif isinstance(schema, list):
            for v in schema:
                collect(v)

    for module in (config, placement, profile):
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == module.__name__:
                collect(obj.model_json_schema())
    assert patterns and patterns <= set(PATTERN_WORDS), patterns - set(PATTERN_WORDS)


def test_long_problem_lists_are_capped_with_a_count() -> None:
    problems = [Problem("site-x", f"edgefm:site.nodes[{i}].name", "duplicate") for i in range(SHOWN_PROBLEMS + 7)]
    lines = summary(problems)
    assert len(lines) == SHOWN_PROBLEMS + 1 and lines[-1] == "… and 7 more problem(s)"
    assert str(ConfigError(problems)).splitlines()[-1] == "… and 7 more problem(s)"
    assert summary(problems[:3]) == [str(p) for p in problems[:3]]


def test_every_problem_of_a_badly_broken_site_is_at_its_own_key(tmp_path: Path) -> None:
    doc = yaml.safe_load(SITE_FILE.read_text())
    site = doc["config"]["edgefm:site"]
    site["nodes"][1]["address"] = "10.99.0.12"
    site["nodes"][2]["name"] = "n1"
    site["nodes"][0]["gpus"] = "one"
    site["labels"]["wave"] = 2
    lines = problems_of(write(tmp_path, yaml.safe_dump(doc), "site-bridge-north"))
    paths = [line.split(": ")[1] for line in lines]
    assert sorted(paths) == sorted(["edgefm:site.nodes[0].gpus", "edgefm:site.labels.wave"]), (
        lines
    )  # field errors first: the model check waits for valid fields
    site["nodes"][0]["gpus"] = 1
    site["labels"]["wave"] = "2"
    lines = problems_of(write(tmp_path, yaml.safe_dump(doc), "site-bridge-north"))
    assert sorted(line.split(": ")[1] for line in lines) == [
        "edgefm:site.nodes[1].address",
        "edgefm:site.nodes[2].name",
    ]


# --- property-based: no input yields a traceback ---------------------------------------------------------

KEYS = [
    "config", "edgefm:site", "edgefm:hub", "edgefm:sshPrivateKey", "edgefm:kubeconfig", "secure", "name",
    "region", "jurisdiction", "labels", "network", "nodes", "address", "gpus", "gpuModel", "cluster", "mode",
    "distribution", "apiAddress", "overrides", "allowExternalServices", "sshUser", "tier", "wave", "flavor",
    "registry", "bucket", "endpoint", "telemetry", "encryptionsalt",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(["10.20.0.11", "10.20.0.0/24", "bridge-north", "DE", "eu-central-1", "L40S", "k3s", "v1:a:b"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=6),
    ),
    max_leaves=40,
)
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def read_and_parse(path: Path) -> None:
    """What `edgefm validate` and the program do with a file; only ConfigError may come out."""
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    try:
        raw = read_stack_file(path)
        if stack == "hub":
            parse_hub(stack, raw, env={})
        else:
            resolve(stack, parse_site(stack, raw, env={}).site, POLICY)
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            line = str(problem)
            assert "\n" not in line and line.startswith(f"{stack}:"), line


@FUZZ
@given(data=st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    read_and_parse(write(tmp_path_factory.mktemp("fuzz"), data))


@FUZZ
@given(text=st.text(max_size=300), codec=st.sampled_from(["utf-8", "utf-16", "utf-32", "latin-1"]))
def test_fuzz_arbitrary_text_in_any_encoding(tmp_path_factory: pytest.TempPathFactory, text: str, codec: str) -> None:
    read_and_parse(write(tmp_path_factory.mktemp("fuzz"), text.encode(codec, errors="replace")))


@FUZZ
@given(site=VALUES, stack=st.sampled_from(["site-bridge-north", "hub"]))
def test_fuzz_yaml_documents_shaped_like_stack_files(
    tmp_path_factory: pytest.TempPathFactory, site: Any, stack: str
) -> None:
    key = "edgefm:hub" if stack == "hub" else "edgefm:site"
    doc = {"config": {key: site, "edgefm:sshPrivateKey": {"secure": "v1:AAAAAAAAAAAAAAAA:AAAA"}}}
    read_and_parse(write(tmp_path_factory.mktemp("fuzz"), yaml.safe_dump(doc), stack))


@FUZZ
@given(
    mutation=st.dictionaries(
        st.sampled_from(["name", "region", "jurisdiction", "labels", "network", "nodes", "cluster", "overrides"]),
        VALUES,
        min_size=1,
        max_size=3,
    )
)
def test_fuzz_mutations_of_a_real_site(tmp_path_factory: pytest.TempPathFactory, mutation: dict[str, Any]) -> None:
    doc = yaml.safe_load(SITE_FILE.read_text())
    doc["config"]["edgefm:site"].update(mutation)
    read_and_parse(write(tmp_path_factory.mktemp("fuzz"), yaml.safe_dump(doc), "site-bridge-north"))
