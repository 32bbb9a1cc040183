"""The Pulumi program: read the stack's config, resolve placement, build the components, export.

Three kinds of stack: `hub` (registry and telemetry, independent of the sites), `hub-access-NNN` (the hub-side
access of the sites that hash to that shard, their credentials sealed to each site's public key) and
`site-<name>`. `__main__.py` calls `run()`; tests call the `build_*()` functions directly under Pulumi's mocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi

from components.hub.fleet_telemetry import prometheus_service
from components.hub.hub_cluster import HUB_NAMESPACE, HubCluster, HubClusterArgs
from components.hub.site_access_shard import SiteAccessShard, SiteAccessShardArgs
from components.site.model_sync import RegistryAccess
from components.site.spoke_appliance import SpokeAppliance, SpokeApplianceArgs
from edgefm.model.config import HubSpec
from edgefm.model.placement import PLACEMENT_FILE, PlacementPolicy, ResolvedSite, load_policy, resolve
from edgefm.model.problems import ConfigError, Problem, summary
from edgefm.model.sealing import SealError, open_sealed
from edgefm.model.stacks import (
    ACCESS_KEYS,
    HUB_KEYS,
    HUB_STACK,
    SITE_KEYS,
    STACKS_DIR,
    AccessStack,
    HubStack,
    SiteStack,
    access_stack_files,
    access_stack_of,
    check_stack_name,
    is_access_stack,
    parse_access,
    parse_hub,
    parse_site,
    read_engine_config,
    read_hub_spec,
    read_stack_file,
    shard_members,
    sibling_stack,
    stack_name_of,
)
from edgefm.program.pin import pin_channel, registry_resolver


def _secret(value: Any) -> pulumi.Output[str] | None:
    return None if value is None else pulumi.Output.secret(value.get_secret_value())


def build_site(
    parsed: SiteStack,
    resolved: ResolvedSite,
    hub_outputs: pulumi.StackReference,
    access_outputs: pulumi.StackReference,
) -> SpokeAppliance:
    """The site; its registry credential comes sealed from its access shard and is opened with its own key."""
    site = parsed.site.name
    if parsed.site_key is None:
        raise ConfigError([Problem(parsed.stack, "edgefm:siteKey", f"required: `edgefm site keygen {parsed.stack}`")])
    private_key = parsed.site_key.get_secret_value()
    entry = access_outputs.require_output("sites").apply(lambda sites: _site_entry(sites, site, access_outputs))

    def opened(e: dict[str, str]) -> dict[str, str]:
        return _open(private_key, e["sealed"], site)

    credential: pulumi.Output[dict[str, str]] = pulumi.Output.secret(entry.apply(opened))
    registry = RegistryAccess(
        endpoint=hub_outputs.require_output("registryEndpoint"),
        bucket=hub_outputs.require_output("registryBucket"),
        region=hub_outputs.require_output("registryRegion"),
        access_key_id=pulumi.Output.unsecret(credential.apply(lambda c: c["accessKeyId"])),
        secret_access_key=pulumi.Output.secret(credential.apply(lambda c: c["secretAccessKey"])),
    )
    spoke = SpokeAppliance(
        site,
        SpokeApplianceArgs(
            site=parsed.site,
            profile=resolved.profile,
            registry=registry,
            remote_write_url=entry.apply(lambda e: str(e["remoteWriteUrl"])),
            ssh_private_key=_secret(parsed.ssh_private_key),
            kubeconfig=_secret(parsed.kubeconfig),
            render_dir=parsed.render_dir,
            # In the fleet lab the cluster already exists: its kubeconfig replaces the SSH bootstrap.
            cluster_mode="existing" if parsed.lab else parsed.site.cluster.mode,
        ),
    )
    explained = resolved.explain()
    pulumi.export("site", site)
    pulumi.export("matchedProfiles", resolved.matched)
    pulumi.export("components", explained["components"])
    pulumi.export("modelChannel", explained["modelChannel"])
    pulumi.export("profile", explained["profile"])
    pulumi.export("kubeconfig", spoke.cluster.kubeconfig)
    pulumi.export("storageEndpoint", spoke.storage.endpoint)
    pulumi.export("modelRepository", spoke.serving.repository)
    pulumi.export("rendered", parsed.render_dir)
    return spoke


def _site_entry(sites: Any, site: str, shard: pulumi.StackReference) -> dict[str, str]:
    if not isinstance(sites, dict) or site not in sites:
        raise pulumi.RunError(
            f"the access shard has no credential for site {site!r} yet: run `pulumi up` on the hub's access shard "
            "for this site first (`edgefm affected` names it)"
        )
    entry: dict[str, str] = sites[site]
    return entry


def _open(private_key: str, sealed: str, site: str) -> dict[str, str]:
    try:
        payload = open_sealed(private_key, sealed)
    except SealError as exc:
        raise pulumi.RunError(f"site {site}: {exc}") from None
    if payload.get("site") != site:
        raise pulumi.RunError(f"site {site}: the sealed credential is for site {payload.get('site')!r}")
    return payload


def build_hub(parsed: HubStack, policy: PlacementPolicy) -> HubCluster:
    """The hub: nothing here depends on the list of sites (their access is in the access shards)."""
    hub = parsed.hub
    cluster = HubCluster(
        HUB_STACK,
        HubClusterArgs(
            hub=hub,
            versions=policy.hub,
            grafana_admin_password=_secret(parsed.grafana_admin_password) or "",
            credential_seed=_secret(parsed.credential_seed),
            kubeconfig=_secret(parsed.kubeconfig),
            render_dir=parsed.render_dir,
        ),
    )
    pulumi.export("registryEndpoint", cluster.registry_endpoint)
    pulumi.export("registryBucket", cluster.registry_bucket)
    pulumi.export("registryRegion", hub.region)
    pulumi.export("telemetryHost", cluster.telemetry_host)
    pulumi.export("grafanaUrl", cluster.grafana_url)
    if cluster.registry_key_arn is not None:
        pulumi.export("registryKeyArn", cluster.registry_key_arn)
    return cluster


def read_shard_sites(stacks_dir: Path, stack: str) -> dict[str, str]:
    """Site name → public key for the sites of one access shard, each site file validated."""
    sites: dict[str, str] = {}
    problems: list[Problem] = []
    for path in shard_members(stacks_dir, stack):
        try:
            parsed = parse_site(stack_name_of(path), read_stack_file(path), env={})
        except ConfigError as exc:
            problems += exc.problems
            continue
        if parsed.public_key is None:
            problems.append(
                Problem(
                    parsed.stack,
                    "edgefm:sitePublicKey",
                    f"required: the hub seals the site's credential to it (`edgefm site keygen {parsed.stack}`)",
                )
            )
            continue
        sites[parsed.site.name] = parsed.public_key
    if problems:
        raise ConfigError(problems)
    return sites


def build_access(parsed: AccessStack, hub: HubSpec, sites: dict[str, str]) -> SiteAccessShard:
    """One access shard: the hub-side access of its sites, and their sealed credentials as one output."""
    key_arn = None
    if hub.flavor == "aws":
        key_arn = pulumi.StackReference(parsed.hub_stack).require_output("registryKeyArn")
    shard = SiteAccessShard(
        parsed.stack,
        SiteAccessShardArgs(
            hub=hub,
            sites=sites,
            namespace=HUB_NAMESPACE,
            prometheus_service=prometheus_service(f"{HUB_STACK}-telemetry"),
            credential_seed=_secret(parsed.credential_seed),
            registry_key_arn=key_arn,
            kubeconfig=_secret(parsed.kubeconfig),
            render_dir=parsed.render_dir,
        ),
    )
    urls = shard.remote_write_urls
    pulumi.export(
        "sites",
        shard.sealed.apply(
            lambda sealed: {site: {"sealed": sealed[site], "remoteWriteUrl": urls[site]} for site in sorted(sealed)}
        ),
    )
    return shard


def run(stack: str, root: Path) -> None:
    """Entry point for `pulumi up`: any config problem stops the program before a resource is registered."""
    stacks_dir = root / STACKS_DIR
    try:
        check_stack_name(stack)
        policy = load_policy(root / PLACEMENT_FILE)
        if stack == HUB_STACK:
            build_hub(parse_hub(stack, read_engine_config(HUB_KEYS)), policy)
            return
        if is_access_stack(stack):
            parsed_access = parse_access(stack, read_engine_config(ACCESS_KEYS))
            hub = read_hub_spec(stacks_dir)
            build_access(parsed_access, hub, read_shard_sites(stacks_dir, stack))
            return
        parsed = parse_site(stack, read_engine_config(SITE_KEYS))
        resolved = pin_channel(resolve(stack, parsed.site, policy), registry_resolver())
        shards = len(access_stack_files(stacks_dir))
        if shards == 0:
            raise ConfigError([Problem(stack, "", "no access shards in stacks/: `edgefm hub shards --count N`")])
        access = sibling_stack(parsed.hub_stack, access_stack_of(stack, shards))
        build_site(parsed, resolved, pulumi.StackReference(parsed.hub_stack), pulumi.StackReference(access))
    except ConfigError as exc:
        for line in summary(exc.problems):
            pulumi.log.error(line)
        raise pulumi.RunError(f"{len(exc.problems)} config problem(s); nothing was changed") from None
