"""Channel pointers: small JSON objects naming the version a channel (stable, canary ...) follows."""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, ValidationError

from edgefm.registry.errors import NotFoundError, RegistryError
from edgefm.registry.names import validate_channel, validate_name, validate_version
from edgefm.registry.settings import BucketSettings
from edgefm.registry.store import Store


class ChannelPointer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    channel: str
    version: str
    promoted_at: datetime
    promoted_by: str
    # The version it pointed to before, so a rollback is one `promote` away.
    previous: str | None = None


def pointer_json(pointer: ChannelPointer) -> bytes:
    return (pointer.model_dump_json(indent=2) + "\n").encode()


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def read_channel(store: Store, name: str, channel: str) -> ChannelPointer | None:
    key = store.channel_key(validate_name(name), validate_channel(channel))
    data = store.get_bytes(key)
    if data is None:
        return None
    try:
        return ChannelPointer.model_validate_json(data)
    except ValidationError:
        raise RegistryError(f"channel pointer s3://{store.bucket}/{key} is malformed") from None


def list_channels(store: Store, name: str) -> dict[str, ChannelPointer]:
    prefix = store.channels_prefix(validate_name(name))
    found: dict[str, ChannelPointer] = {}
    for obj in store.list_objects(prefix):
        channel = obj.key[len(prefix) :].removesuffix(".json")
        pointer = read_channel(store, name, channel)
        if pointer is not None:
            found[channel] = pointer
    return found


def promote(store: Store, name: str, version: str, channel: str) -> ChannelPointer:
    """Point ``channel`` at ``version``; refuses a version without a manifest (unpublished or unfinished)."""
    validate_name(name)
    validate_version(version)
    validate_channel(channel)
    store.check()
    if not store.exists(store.manifest_key(name, version)):
        raise NotFoundError(
            f"cannot promote {name} {version} to {channel}: {name} {version} has no manifest in "
            f"{store.settings.url} (not published, or its upload never finished)"
        )
    current = read_channel(store, name, channel)
    previous = current.previous if current else None
    if current and current.version != version:
        previous = current.version
    pointer = ChannelPointer(
        name=name,
        channel=channel,
        version=version,
        promoted_at=datetime.now(UTC),
        promoted_by=_who(),
        previous=previous,
    )
    store.put_bytes(store.channel_key(name, channel), pointer_json(pointer))
    return pointer


def get_channel(store: Store, name: str, channel: str) -> ChannelPointer:
    """The pointer of ``channel``; :class:`NotFoundError` says whether the model or the channel is unknown."""
    pointer = read_channel(store, name, channel)
    if pointer is None:
        if not store.list_dirs(store.model_prefix(name)):
            raise NotFoundError(f"unknown model {name!r} in {store.settings.url}")
        known = sorted(list_channels(store, name))
        hint = f" (channels: {', '.join(known)})" if known else " (it has no channels yet)"
        raise NotFoundError(f"model {name!r} has no channel {channel!r}{hint}")
    return pointer


def resolve_channel(source: BucketSettings | Store, name: str, channel: str) -> str:
    """The version ``channel`` of model ``name`` points to.

    ``source`` is the registry's settings (e.g. ``BucketSettings.from_env()``) or an open
    :class:`Store`. Raises :class:`NotFoundError` for an unknown model or channel and
    :class:`StorageError` when the bucket cannot be read; both are :class:`RegistryError`.
    """
    store = source if isinstance(source, Store) else Store(source)
    return get_channel(store, name, channel).version
