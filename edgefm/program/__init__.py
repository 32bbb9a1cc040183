"""The Pulumi program: read the stack's config, resolve placement, build the components, export.

`__main__.py` calls `run()`; tests call `build_site()`/`build_hub()` directly under Pulumi's mocks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi

from components.hub.hub_cluster import HubCluster, HubClusterArgs
from components.site.model_sync import RegistryAccess
from components.site.spoke_appliance import SpokeAppliance, SpokeApplianceArgs
from edgefm.model.placement import PLACEMENT_FILE, PlacementPolicy, ResolvedSite, load_policy, resolve
from edgefm.model.problems import ConfigError, summary
from edgefm.model.stacks import (
    HUB_KEYS,
    HUB_STACK,
    SITE_FILE_GLOB,
    SITE_KEYS,
    STACKS_DIR,
    HubStack,
    SiteStack,
    check_fleet,
    check_stack_name,
    parse_hub,
    parse_site,
    read_engine_config,
    site_stack_files,
)
from edgefm.program.pin import pin_channel, registry_resolver


def _secret(value: Any) -> pulumi.Output[str] | None:
    return None if value is None else pulumi.Output.secret(value.get_secret_value())


def build_site(parsed: SiteStack, resolved: ResolvedSite, hub_outputs: pulumi.StackReference) -> SpokeAppliance:
    site = parsed.site.name
    credentials = hub_outputs.require_output("siteCredentials").apply(lambda creds: _site_credential(creds, site))
    registry = RegistryAccess(
        endpoint=hub_outputs.require_output("registryEndpoint"),
        bucket=hub_outputs.require_output("registryBucket"),
        region=hub_outputs.require_output("registryRegion"),
        access_key_id=credentials.apply(lambda c: c["accessKeyId"]),
        secret_access_key=pulumi.Output.secret(credentials.apply(lambda c: c["secretAccessKey"])),
    )
    spoke = SpokeAppliance(
        site,
        SpokeApplianceArgs(
            site=parsed.site,
            profile=resolved.profile,
            registry=registry,
            remote_write_url=hub_outputs.require_output("remoteWriteUrl"),
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


def _site_credential(creds: Any, site: str) -> dict[str, str]:
    if not isinstance(creds, dict) or site not in creds:
        raise pulumi.RunError(
            f"the hub has no registry identity for site {site!r}: run `pulumi up` on the hub stack first "
            f"(it creates one for every {STACKS_DIR}/{SITE_FILE_GLOB})"
        )
    entry: dict[str, str] = creds[site]
    return entry


def build_hub(parsed: HubStack, policy: PlacementPolicy, sites: list[str]) -> HubCluster:
    hub = parsed.hub
    cluster = HubCluster(
        HUB_STACK,
        HubClusterArgs(
            hub=hub,
            versions=policy.hub,
            sites=sites,
            grafana_admin_password=_secret(parsed.grafana_admin_password) or "",
            credential_seed=_secret(parsed.credential_seed),
            kubeconfig=_secret(parsed.kubeconfig),
            render_dir=parsed.render_dir,
        ),
    )
    pulumi.export("registryEndpoint", cluster.registry_endpoint)
    pulumi.export("registryBucket", cluster.registry_bucket)
    pulumi.export("registryRegion", hub.region)
    pulumi.export("remoteWriteUrl", cluster.remote_write_url)
    pulumi.export("grafanaUrl", cluster.grafana_url)
    pulumi.export("sites", sites)
    pulumi.export(
        "siteCredentials",
        pulumi.Output.secret(
            {
                site: {"accessKeyId": cred.access_key_id, "secretAccessKey": cred.secret_access_key}
                for site, cred in cluster.site_credentials.items()
            }
        ),
    )
    return cluster


def run(stack: str, root: Path) -> None:
    """Entry point for `pulumi up`: any config problem stops the program before a resource is registered."""
    try:
        check_stack_name(stack)
        policy = load_policy(root / PLACEMENT_FILE)
        if stack == HUB_STACK:
            parsed_hub = parse_hub(stack, read_engine_config(HUB_KEYS))
            fleet = check_fleet(site_stack_files(root / STACKS_DIR), policy)
            if fleet.problems:
                raise ConfigError(fleet.problems)
            build_hub(parsed_hub, policy, sorted(r.site.name for r in fleet.sites.values()))
            return
        parsed = parse_site(stack, read_engine_config(SITE_KEYS))
        resolved = pin_channel(resolve(stack, parsed.site, policy), registry_resolver())
    except ConfigError as exc:
        for line in summary(exc.problems):
            pulumi.log.error(line)
        raise pulumi.RunError(f"{len(exc.problems)} config problem(s); nothing was changed") from None
    build_site(parsed, resolved, pulumi.StackReference(parsed.hub_stack))
