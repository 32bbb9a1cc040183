"""Pins a profile that follows a registry channel to the version the channel points to now.

Resolution happens when the program runs (preview or update) and when `edgefm explain` runs, never at the
site: a channel promotion therefore shows up as a version diff in each site's next preview, and rolls out
like any other change. The runner reads the hub registry with `EDGEFM_REGISTRY_*` settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from edgefm.model.placement import ResolvedSite
from edgefm.model.problems import ConfigError, Problem
from edgefm.model.profile import ModelRef

ChannelResolver = Callable[[str, str], str]


def registry_resolver(env: Mapping[str, str] | None = None) -> ChannelResolver:
    """Resolves channels through the hub registry named by `EDGEFM_REGISTRY_*` in `env`."""
    from edgefm.registry import BucketSettings, resolve_channel

    def resolve(name: str, channel: str) -> str:
        return resolve_channel(BucketSettings.from_env(environ=env), name, channel)

    return resolve


def pin_channel(resolved: ResolvedSite, resolver: ChannelResolver) -> ResolvedSite:
    model = resolved.profile.model
    if model.channel is None:
        return resolved
    from edgefm.registry import RegistryError

    try:
        version = resolver(model.name, model.channel)
    except RegistryError as exc:
        where = f"model.channel (from {resolved.source_of('model.channel')})"
        message = f"follows channel {model.channel!r} of {model.name}, which cannot be resolved: {exc}"
        raise ConfigError([Problem(resolved.stack, where, message)]) from None
    pinned = ModelRef(name=model.name, version=version)
    profile = resolved.profile.model_copy(update={"model": pinned})
    return replace(resolved, profile=profile, channel=model.channel)
