"""Onboarding's two steps outside the engine's programs: the hub's access shard files, and a site's key pair.

* `write_access_shards`: `stacks/Pulumi.hub-access-NNN.yaml` for N shards. Each holds copies of the hub's
  `edgefm:credentialSeed` and `edgefm:kubeconfig` as they are stored (ciphertext) together with the hub file's
  secrets-provider settings, so the shard decrypts them exactly as the hub does; nothing is decrypted here.
* `keygen`: a fresh X25519 key pair for a site: the public key as plain config in its stack file (the hub seals
  to it), the private key as a secret of the site's own stack (set through the engine, which encrypts it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml
from pulumi import automation as auto

from edgefm.model.problems import ConfigError, Problem
from edgefm.model.sealing import generate_keypair
from edgefm.model.stacks import (
    HUB_STACK,
    MAX_ACCESS_SHARDS,
    NAMESPACE,
    access_index,
    access_stack,
    access_stack_files,
    is_site_stack,
    read_stack_file,
    shard_of,
    site_stack_files,
    stack_file,
    stack_name_of,
)

# The hub secrets a shard needs, and the stack-file keys that say how they are encrypted.
SHARED_SECRETS: Final = ("credentialSeed", "kubeconfig")
PROVIDER_KEYS: Final = ("secretsprovider", "encryptedkey", "encryptionsalt")


@dataclass(frozen=True)
class ShardChange:
    written: list[str]
    removed: list[str]
    # Sites whose shard changes with the count (their hub-side objects move between stacks).
    moved: list[str]


def write_access_shards(stacks_dir: Path, count: int) -> ShardChange:
    if not 1 <= count <= MAX_ACCESS_SHARDS:
        raise ConfigError([Problem(HUB_STACK, "", f"the shard count must be 1 to {MAX_ACCESS_SHARDS}, got {count}")])
    hub_file = stack_file(stacks_dir, HUB_STACK)
    try:
        hub = yaml.safe_load(hub_file.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError([Problem(HUB_STACK, "", f"stack file {hub_file} not found")]) from None
    config = hub.get("config") or {}
    shared: dict[str, Any] = {
        f"{NAMESPACE}:{key}": config[f"{NAMESPACE}:{key}"] for key in SHARED_SECRETS if f"{NAMESPACE}:{key}" in config
    }
    for key, value in shared.items():
        if not (isinstance(value, dict) and set(value) == {"secure"}):
            raise ConfigError([Problem(HUB_STACK, key, "must be a secret before shards can share it")])
    before = len(access_stack_files(stacks_dir))
    sites = [stack_name_of(p) for p in site_stack_files(stacks_dir)]
    moved = [s for s in sites if before and shard_of(s, before) != shard_of(s, count)]
    written = []
    for index in range(count):
        name = access_stack(index)
        doc: dict[str, Any] = {"config": shared} if shared else {"config": {}}
        doc.update({k: hub[k] for k in PROVIDER_KEYS if k in hub})
        header = (
            f"# Access shard {index} of {count}: the hub-side registry and telemetry access of the sites whose stack\n"
            f"# name hashes here. Written by `edgefm hub shards --count {count}` from {hub_file.name}; rerun it after\n"
            "# changing the hub's credentialSeed or kubeconfig.\n"
        )
        stack_file(stacks_dir, name).write_text(header + yaml.safe_dump(doc, sort_keys=False))
        written.append(name)
    removed = []
    for path in access_stack_files(stacks_dir):
        if access_index(stack_name_of(path)) >= count:
            path.unlink()
            removed.append(stack_name_of(path))
    return ShardChange(written, removed, moved)


def keygen(
    root: Path,
    stack: str,
    workspace_options: Callable[..., auto.LocalWorkspaceOptions],
    *,
    rotate: bool = False,
) -> str:
    """Gives a site stack a fresh key pair; returns the public key. Refuses to replace one unless `rotate`."""
    path = stack_file(root / "stacks", stack)
    if not is_site_stack(stack):
        raise ConfigError([Problem(stack, "", "only site stacks have a site key")])
    raw = read_stack_file(path)
    if f"{NAMESPACE}:siteKey" in raw and not rotate:
        raise ConfigError([Problem(stack, f"{NAMESPACE}:siteKey", "already set; pass --rotate to replace it")])
    pair = generate_keypair()
    ws = auto.create_or_select_stack(stack_name=stack, work_dir=str(root), opts=workspace_options(work_dir=root))
    # The private key first: a public key without its private key would seal credentials nobody can open.
    ws.set_config(f"{NAMESPACE}:siteKey", auto.ConfigValue(pair.private_key, secret=True))
    ws.set_config(f"{NAMESPACE}:sitePublicKey", auto.ConfigValue(pair.public_key))
    return pair.public_key
