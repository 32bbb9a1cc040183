"""Reads stack config — from `stacks/Pulumi.<stack>.yaml` files or from the running engine — into typed
stack settings, collecting every problem before any resource is registered."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import SecretStr, ValidationError

from edgefm.model import secure, yamlfile
from edgefm.model.config import HubSpec, SiteSpec
from edgefm.model.placement import PlacementPolicy, ResolvedSite, resolve
from edgefm.model.problems import ConfigError, Problem, from_validation_error
from edgefm.model.sealing import SealError, check_key, public_key_of

SpecT = TypeVar("SpecT", SiteSpec, HubSpec)
NAMESPACE = "edgefm"
# The only place that spells stack names and stack files: every other module asks here.
HUB_STACK = "hub"
SITE_PREFIX = "site-"
# Access shards: each owns the hub-side registry and telemetry access of the sites whose stack name hashes to it.
ACCESS_PREFIX = "hub-access-"
ACCESS_FILE_GLOB = f"Pulumi.{ACCESS_PREFIX}*.yaml"
MAX_ACCESS_SHARDS = 1000
STACKS_DIR = "stacks"
STACK_FILE_GLOB = "Pulumi.*.yaml"
SITE_FILE_GLOB = f"Pulumi.{SITE_PREFIX}*.yaml"
SITE_KEYS = frozenset({"site", "sshPrivateKey", "kubeconfig", "renderDir", "hubStack", "siteKey", "sitePublicKey"})
HUB_KEYS = frozenset({"hub", "kubeconfig", "credentialSeed", "grafanaAdminPassword", "renderDir"})
# An access shard holds copies of the hub's secrets it needs (written by `edgefm hub shards`).
ACCESS_KEYS = frozenset({"kubeconfig", "credentialSeed", "renderDir", "hubStack"})
SECRET_KEYS = frozenset({"sshPrivateKey", "kubeconfig", "credentialSeed", "grafanaAdminPassword", "siteKey"})
# Makes every stack render manifests under <root>/<stack> instead of applying them (demo, GitOps, CI).
RENDER_ROOT_ENV = "EDGEFM_RENDER_ROOT"
# Makes every stack apply to the fleet lab's cluster for it instead of its own: the admin kubeconfig that
# `edgefm lab up` writes to <lab dir>/<stack>/kubeconfig (no stack file is edited).
LAB_DIR_ENV = "EDGEFM_LAB_DIR"
LAB_KUBECONFIG = "kubeconfig"
DEFAULT_HUB_STACK = "organization/edgefm/hub"


@dataclass(frozen=True)
class RawValue:
    """One config value as stored; `value` is None for an encrypted value read from a file."""

    value: Any
    secret: bool


RawConfig = Mapping[str, RawValue]


@dataclass(frozen=True)
class SiteStack:
    stack: str
    site: SiteSpec
    render_dir: str | None
    hub_stack: str
    ssh_private_key: SecretStr | None
    kubeconfig: SecretStr | None
    # X25519 keys: the hub seals the site's credential to the public one, the private one opens it.
    site_key: SecretStr | None = None
    public_key: str | None = None
    # The kubeconfig is the fleet lab's cluster for this stack: no SSH bootstrap, everything else as on site.
    lab: bool = False

    @property
    def rendering(self) -> bool:
        return self.render_dir is not None


@dataclass(frozen=True)
class AccessStack:
    stack: str
    index: int
    render_dir: str | None
    hub_stack: str
    kubeconfig: SecretStr | None
    credential_seed: SecretStr | None


@dataclass(frozen=True)
class HubStack:
    stack: str
    hub: HubSpec
    render_dir: str | None
    kubeconfig: SecretStr | None
    credential_seed: SecretStr | None
    grafana_admin_password: SecretStr | None
    lab: bool = False

    @property
    def rendering(self) -> bool:
        return self.render_dir is not None


def stack_file(stacks_dir: Path, stack: str) -> Path:
    return stacks_dir / f"Pulumi.{stack}.yaml"


def stack_name_of(path: Path) -> str:
    return path.name.removeprefix("Pulumi.").removesuffix(".yaml")


def site_stack(site: str) -> str:
    """The stack of a site named `site`."""
    return f"{SITE_PREFIX}{site}"


def site_of_stack(stack: str) -> str:
    """The site a site stack is for (`site-<name>` → `<name>`)."""
    return stack.removeprefix(SITE_PREFIX)


def is_site_stack(stack: str) -> bool:
    return stack.startswith(SITE_PREFIX)


def access_stack(index: int) -> str:
    return f"{ACCESS_PREFIX}{index:03d}"


def is_access_stack(stack: str) -> bool:
    return stack.startswith(ACCESS_PREFIX)


def access_index(stack: str) -> int:
    return int(stack.removeprefix(ACCESS_PREFIX))


def shard_of(stack: str, shards: int) -> int:
    """The access shard of a site stack: a stable hash of its name, so a site never moves while the count stays."""
    return int.from_bytes(hashlib.sha256(stack.encode()).digest()[:8], "big") % shards


def access_stack_of(stack: str, shards: int) -> str:
    return access_stack(shard_of(stack, shards))


def access_stack_names(names: Iterable[str]) -> list[str]:
    return sorted(n for n in names if is_access_stack(n))


def sibling_stack(reference: str, stack: str) -> str:
    """`org/project/hub` → `org/project/<stack>`: a stack beside the referenced one."""
    head, sep, _ = reference.rpartition("/")
    return f"{head}{sep}{stack}"


_REPO_STACK_FILE = re.compile(rf"^{STACKS_DIR}/Pulumi\.(?P<stack>[^/]+)\.yaml$")


def stack_of_repo_path(path: str) -> str | None:
    """The stack whose file is at repository-relative `path` (`stacks/Pulumi.<stack>.yaml`), else None."""
    match = _REPO_STACK_FILE.match(path)
    return match.group("stack") if match else None


def stack_files(stacks_dir: Path) -> list[Path]:
    return sorted(stacks_dir.glob(STACK_FILE_GLOB))


def stacks_in(root: Path) -> set[str]:
    """The names of every stack with a file under `root/stacks`."""
    return {stack_name_of(p) for p in stack_files(root / STACKS_DIR)}


def fleet_stack_names(root: Path) -> list[str]:
    """The hub first (sites read its outputs), then every site, by name."""
    names = stacks_in(root)
    hub = [HUB_STACK] if HUB_STACK in names else []
    return hub + access_stack_names(names) + sorted(n for n in names if is_site_stack(n))


def read_stack_file(path: Path, passphrase: str | None = None) -> RawConfig:
    """The `config:` block of a stack file. Encrypted (`secure:`) values are checked for the form Pulumi writes
    and kept as opaque secrets; given the passphrase, each is decrypted, so one that would not decrypt at
    `pulumi up` is a problem now. Any file that cannot be read, decoded or parsed is one problem."""
    stack = stack_name_of(path)
    try:
        doc = yamlfile.read(path)
    except yamlfile.FileProblem as exc:
        raise ConfigError([Problem(stack, "", f"stack file {path} {exc}")]) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError([Problem(stack, "", f"stack file {path} must be a mapping with a `config:` key")])
    config = doc.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError([Problem(stack, "config", "must be a mapping of config keys")])
    problems: list[Problem] = []
    raw: dict[str, RawValue] = {}
    key: bytes | None = None
    for name, value in config.items():
        if not isinstance(name, str):
            problems.append(Problem(stack, f"config.{name!r}", "config keys are text, such as edgefm:site"))
            continue
        if not (isinstance(value, dict) and "secure" in value):
            raw[name] = RawValue(value, secret=False)
            continue
        if set(value) != {"secure"}:
            problems.append(Problem(stack, name, "`secure:` stands alone: an encrypted value has no other keys"))
            continue
        plain: str | None = None
        try:
            if passphrase is None:
                secure.check_form(value["secure"])
            else:
                if key is None:
                    try:
                        key = secure.stack_key(doc.get("encryptionsalt"), passphrase)
                    except secure.SecureValueError as exc:
                        # None of the stack's secrets can be read: one problem, at the salt.
                        raise ConfigError([*problems, Problem(stack, "encryptionsalt", str(exc))]) from None
                plain = secure.decrypt(key, value["secure"])
        except secure.SecureValueError as exc:
            problems.append(Problem(stack, name, f"secure value {exc}"))
            continue
        raw[name] = RawValue(plain, secret=True)
    if problems:
        raise ConfigError(problems)
    return raw


def read_engine_config(keys: Iterable[str]) -> RawConfig:
    """Config as the running Pulumi program sees it (secrets decrypted, flagged by the engine)."""
    from pulumi.runtime.config import get_config, is_config_secret

    raw: dict[str, RawValue] = {}
    for name in keys:
        full = f"{NAMESPACE}:{name}"
        value = get_config(full)
        if value is None:
            continue
        if isinstance(value, str) and value[:1] in "{[":
            # The engine hands structured values over as JSON text.
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        raw[full] = RawValue(value, secret=is_config_secret(full))
    return raw


def _secret(raw: RawConfig, key: str, stack: str, problems: list[Problem]) -> SecretStr | None:
    item = raw.get(f"{NAMESPACE}:{key}")
    if item is None:
        return None
    if not item.secret:
        problems.append(
            Problem(
                stack,
                f"{NAMESPACE}:{key}",
                f"must be a secret: set it with `pulumi config set --secret {key}`",
            )
        )
        return None
    if item.value is None:
        return SecretStr("")  # encrypted in a file: present, content checked by the engine
    if not isinstance(item.value, str) or not item.value.strip():
        problems.append(Problem(stack, f"{NAMESPACE}:{key}", "must be a non-empty string"))
        return None
    return SecretStr(item.value)


def _plain_str(raw: RawConfig, key: str, stack: str, problems: list[Problem]) -> str | None:
    item = raw.get(f"{NAMESPACE}:{key}")
    if item is None:
        return None
    if not isinstance(item.value, str) or not item.value:
        problems.append(Problem(stack, f"{NAMESPACE}:{key}", "must be a non-empty string"))
        return None
    return item.value


def _spec(raw: RawConfig, key: str, model: type[SpecT], stack: str, problems: list[Problem]) -> SpecT | None:
    """The stack's main object (`edgefm:site` or `edgefm:hub`), validated; None with problems recorded."""
    item = raw.get(f"{NAMESPACE}:{key}")
    if item is None:
        problems.append(Problem(stack, f"{NAMESPACE}:{key}", "required key is missing"))
        return None
    try:
        return model.model_validate(item.value)
    except ValidationError as exc:
        problems += from_validation_error(stack, f"{NAMESPACE}:{key}", exc)
        return None


def _check_keys(raw: RawConfig, allowed: frozenset[str], stack: str, problems: list[Problem]) -> None:
    for full in raw:
        ns, _, key = full.partition(":")
        if ns == NAMESPACE and key not in allowed:
            problems.append(Problem(stack, full, f"unknown key; this stack takes {', '.join(sorted(allowed))}"))
        elif ns != NAMESPACE and key in SECRET_KEYS and not raw[full].secret:
            problems.append(Problem(stack, full, "must be a secret"))


def _render_dir(raw: RawConfig, stack: str, problems: list[Problem], env: Mapping[str, str]) -> str | None:
    root = env.get(RENDER_ROOT_ENV)
    if root:
        return str(Path(root) / stack)
    return _plain_str(raw, "renderDir", stack, problems)


def lab_kubeconfig_path(lab_dir: Path, stack: str) -> Path:
    return lab_dir / stack / LAB_KUBECONFIG


def _lab_kubeconfig(stack: str, problems: list[Problem], env: Mapping[str, str]) -> SecretStr | None:
    """The lab's kubeconfig for the stack when lab mode is on (EDGEFM_LAB_DIR), else None."""
    root = env.get(LAB_DIR_ENV)
    if not root:
        return None
    if env.get(RENDER_ROOT_ENV):
        problems.append(
            Problem(stack, "", f"{RENDER_ROOT_ENV} and {LAB_DIR_ENV} are both set: a run renders or applies, not both")
        )
        return None
    path = lab_kubeconfig_path(Path(root), stack)
    try:
        text = path.read_text()
    except OSError:
        problems.append(
            Problem(stack, "", f"the fleet lab has no cluster for this stack ({path}): run `edgefm lab up`")
        )
        return None
    return SecretStr(text)


def parse_site(stack: str, raw: RawConfig, env: Mapping[str, str] | None = None) -> SiteStack:
    env = os.environ if env is None else env
    problems: list[Problem] = []
    _check_keys(raw, SITE_KEYS, stack, problems)
    site = _spec(raw, "site", SiteSpec, stack, problems)
    ssh = _secret(raw, "sshPrivateKey", stack, problems)
    kubeconfig = _secret(raw, "kubeconfig", stack, problems)
    render_dir = _render_dir(raw, stack, problems, env)
    lab = _lab_kubeconfig(stack, problems, env)
    hub_stack = _plain_str(raw, "hubStack", stack, problems) or DEFAULT_HUB_STACK
    if site is not None:
        expected = stack.removeprefix(SITE_PREFIX)
        if site.name != expected:
            problems.append(
                Problem(
                    stack,
                    f"{NAMESPACE}:site.name",
                    f"is {site.name!r} but the stack is named for {expected!r}",
                )
            )
        public = _plain_str(raw, "sitePublicKey", stack, problems)
        key = _secret(raw, "siteKey", stack, problems)
        if public is not None:
            try:
                check_key(public, "the public key")
            except SealError as exc:
                problems.append(Problem(stack, f"{NAMESPACE}:sitePublicKey", str(exc)))
                public = None
        if key is not None and key.get_secret_value() and public is not None:
            try:
                if public_key_of(key.get_secret_value()) != public:
                    problems.append(Problem(stack, f"{NAMESPACE}:sitePublicKey", "does not belong to edgefm:siteKey"))
            except SealError as exc:
                problems.append(Problem(stack, f"{NAMESPACE}:siteKey", str(exc)))
        # Credentials are only needed when the program talks to real machines.
        # A key given in plain text was reported above; only an absent key is "missing".
        real = render_dir is None and lab is None
        if real and site.cluster.mode == "k3s" and f"{NAMESPACE}:sshPrivateKey" not in raw:
            problems.append(Problem(stack, f"{NAMESPACE}:sshPrivateKey", "required to bootstrap k3s over SSH"))
        if real and site.cluster.mode == "existing" and f"{NAMESPACE}:kubeconfig" not in raw:
            problems.append(Problem(stack, f"{NAMESPACE}:kubeconfig", "required for an existing cluster"))
    if problems or site is None:
        raise ConfigError(problems)
    if lab is not None:
        return SiteStack(stack, site, None, hub_stack, ssh, lab, key, public, lab=True)
    return SiteStack(stack, site, render_dir, hub_stack, ssh, kubeconfig, key, public)


def parse_hub(stack: str, raw: RawConfig, env: Mapping[str, str] | None = None) -> HubStack:
    env = os.environ if env is None else env
    problems: list[Problem] = []
    _check_keys(raw, HUB_KEYS, stack, problems)
    hub = _spec(raw, "hub", HubSpec, stack, problems)
    kubeconfig = _secret(raw, "kubeconfig", stack, problems)
    seed = _secret(raw, "credentialSeed", stack, problems)
    grafana = _secret(raw, "grafanaAdminPassword", stack, problems)
    render_dir = _render_dir(raw, stack, problems, env)
    lab = _lab_kubeconfig(stack, problems, env)
    if hub is not None:
        if hub.flavor == "datacenter" and f"{NAMESPACE}:credentialSeed" not in raw:
            problems.append(
                Problem(
                    stack,
                    f"{NAMESPACE}:credentialSeed",
                    "required: per-site registry keys are derived from it",
                )
            )
        if f"{NAMESPACE}:grafanaAdminPassword" not in raw:
            problems.append(Problem(stack, f"{NAMESPACE}:grafanaAdminPassword", "required key is missing"))
        if render_dir is None and lab is None and f"{NAMESPACE}:kubeconfig" not in raw:
            problems.append(Problem(stack, f"{NAMESPACE}:kubeconfig", "required to reach the hub cluster"))
    if problems or hub is None:
        raise ConfigError(problems)
    if lab is not None:
        return HubStack(stack, hub, None, lab, seed, grafana, lab=True)
    return HubStack(stack, hub, render_dir, kubeconfig, seed, grafana)


def parse_access(stack: str, raw: RawConfig, env: Mapping[str, str] | None = None) -> AccessStack:
    env = os.environ if env is None else env
    problems: list[Problem] = []
    _check_keys(raw, ACCESS_KEYS, stack, problems)
    kubeconfig = _secret(raw, "kubeconfig", stack, problems)
    seed = _secret(raw, "credentialSeed", stack, problems)
    render_dir = _render_dir(raw, stack, problems, env)
    hub_stack = _plain_str(raw, "hubStack", stack, problems) or DEFAULT_HUB_STACK
    # A shard's objects live on the hub's cluster: in the fleet lab, the hub's lab cluster.
    lab = _lab_kubeconfig(HUB_STACK, problems, env)
    if render_dir is None and lab is None and f"{NAMESPACE}:kubeconfig" not in raw:
        problems.append(Problem(stack, f"{NAMESPACE}:kubeconfig", "required to reach the hub cluster"))
    if problems:
        raise ConfigError(problems)
    if lab is not None:
        return AccessStack(stack, access_index(stack), None, hub_stack, lab, seed)
    return AccessStack(stack, access_index(stack), render_dir, hub_stack, kubeconfig, seed)


_STACK_NAME = re.compile(rf"^({HUB_STACK}|{ACCESS_PREFIX}[0-9]{{3}}|{SITE_PREFIX}[a-z0-9]([-a-z0-9]*[a-z0-9])?)$")


def check_stack_name(stack: str) -> None:
    if not _STACK_NAME.match(stack):
        raise ConfigError(
            [Problem(stack, "", f"stack names are `{HUB_STACK}`, `{ACCESS_PREFIX}NNN` or `{SITE_PREFIX}<name>`")]
        )


def resolve_site_file(path: Path, policy: PlacementPolicy, env: Mapping[str, str] | None = None) -> ResolvedSite:
    stack = stack_name_of(path)
    check_stack_name(stack)
    parsed = parse_site(stack, read_stack_file(path), env)
    return resolve(stack, parsed.site, policy)


@dataclass(frozen=True)
class FleetReport:
    sites: dict[str, ResolvedSite]
    hub: HubStack | None
    problems: list[Problem]
    access: list[str] = field(default_factory=list)


def check_fleet(
    paths: Iterable[Path],
    policy: PlacementPolicy,
    env: Mapping[str, str] | None = None,
    passphrase: str | None = None,
) -> FleetReport:
    """Validates every given stack file, collecting all problems rather than stopping at the first; with the
    passphrase, every `secure:` value is decrypted too."""
    sites: dict[str, ResolvedSite] = {}
    hub: HubStack | None = None
    access: list[str] = []
    problems: list[Problem] = []
    for path in sorted(paths):
        stack = stack_name_of(path)
        try:
            check_stack_name(stack)
            raw = read_stack_file(path, passphrase)
            if stack == HUB_STACK:
                hub = parse_hub(stack, raw, env)
            elif is_access_stack(stack):
                access.append(parse_access(stack, raw, env).stack)
            else:
                parsed = parse_site(stack, raw, env)
                if parsed.public_key is None:
                    problems.append(
                        Problem(
                            stack,
                            f"{NAMESPACE}:sitePublicKey",
                            f"required: the hub seals the site's credential to it (`edgefm site keygen {stack}`)",
                        )
                    )
                sites[stack] = resolve(stack, parsed.site, policy)
        except ConfigError as exc:
            problems += exc.problems
    if hub is not None:
        problems += _shadowed_by_sites(hub, sites)
    if hub is not None and sites and not access:
        problems.append(
            Problem(HUB_STACK, "", "no access shards: `edgefm hub shards --count N` writes stacks/Pulumi.hub-access-*")
        )
    expected = [access_stack(i) for i in range(len(access))]
    if access != expected:
        problems.append(
            Problem(
                ", ".join(sorted(set(access) ^ set(expected))),
                "",
                f"access shards must be numbered {ACCESS_PREFIX}000 to {ACCESS_PREFIX}{len(access) - 1:03d} without "
                "gaps (`edgefm hub shards --count N` writes them)",
            )
        )
    return FleetReport(sites, hub, problems, access)


def _shadowed_by_sites(hub: HubStack, sites: Mapping[str, ResolvedSite]) -> list[Problem]:
    """Sites whose names the hub's registry bucket reserves: a site's `<name>-models` bucket (and the others)
    must never be mistaken for the registry, by people or by the guardrails."""
    bucket = hub.hub.registry.bucket
    return [
        Problem(
            stack,
            f"{NAMESPACE}:site.name",
            f"site name {resolved.site.name!r} is reserved by the hub: its registry bucket {bucket} begins with "
            f"it, and this site's buckets ({resolved.site.name}-models, ...) would be taken for the registry",
        )
        for stack, resolved in sorted(sites.items())
        if bucket.startswith(f"{resolved.site.name}-")
    ]


def site_stack_files(stacks_dir: Path) -> list[Path]:
    return sorted(stacks_dir.glob(SITE_FILE_GLOB))


def access_stack_files(stacks_dir: Path) -> list[Path]:
    return sorted(stacks_dir.glob(ACCESS_FILE_GLOB))


def shard_members(stacks_dir: Path, stack: str) -> list[Path]:
    """The site stack files an access shard serves (by name only: no other site's file is read)."""
    count = len(access_stack_files(stacks_dir))
    index = access_index(stack)
    return [p for p in site_stack_files(stacks_dir) if shard_of(stack_name_of(p), count) == index]


def read_hub_spec(stacks_dir: Path) -> HubSpec:
    """The hub's validated `edgefm:hub` from its stack file (plain config: no secret is read)."""
    raw = read_stack_file(stack_file(stacks_dir, HUB_STACK))
    problems: list[Problem] = []
    hub = _spec(raw, "hub", HubSpec, HUB_STACK, problems)
    if problems or hub is None:
        raise ConfigError(problems)
    return hub
