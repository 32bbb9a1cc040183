"""Constrained value types shared by the config, placement and profile models."""

from __future__ import annotations

import re
from typing import Annotated

import pycountry
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints


def to_camel(name: str) -> str:
    """snake_case → camelCase, leaving digits alone (pydantic's own turns `k3s` into `k3S`)."""
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


class Model(BaseModel):
    """Base for every config model: camelCase keys in YAML, unknown keys rejected, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

# Names end up inside Kubernetes object names and S3 bucket names, so they must be DNS labels with room
# left for suffixes such as `-checkpoints`.
DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=30)]

LABEL_VALUE = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", max_length=63)]

FLOATING_TAGS = frozenset({"latest", "stable", "main", "master", "edge", "nightly", "dev"})


def _pinned_version(value: str) -> str:
    if value.lower() in FLOATING_TAGS:
        raise ValueError(f"version {value!r} floats; pin an exact version")
    if any(ch in value for ch in "*^~<>=| ") or value.endswith((".x", ".X")):
        raise ValueError(f"version {value!r} is a range; pin an exact version")
    if not re.fullmatch(r"v?\d+(\.\d+){1,3}([-+.][0-9A-Za-z.+-]+)?", value):
        raise ValueError(f"version {value!r} is not an exact version such as 1.2.3 or v25.3.0")
    return value


PinnedVersion = Annotated[str, AfterValidator(_pinned_version)]

_IMAGE = re.compile(
    r"^(?P<repo>[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+)"
    r"(:(?P<tag>[\w][\w.-]{0,127}))?(@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


def _pinned_image(value: str) -> str:
    m = _IMAGE.match(value)
    if not m:
        raise ValueError(f"image {value!r} is not a fully qualified image reference (registry/repository:tag)")
    tag, digest = m.group("tag"), m.group("digest")
    if digest is None and (tag is None or tag.lower() in FLOATING_TAGS):
        raise ValueError(f"image {value!r} floats; pin a tag other than {tag or 'latest'!r} or a digest")
    return value


PinnedImage = Annotated[str, AfterValidator(_pinned_image)]


def _jurisdiction(value: str) -> str:
    # ISO 3166-1 alpha-2 country codes, or ISO 3166-2 subdivisions (e.g. US-CA) where law is set below
    # the country level.
    if "-" in value:
        subdivision = pycountry.subdivisions.get(code=value)  # type: ignore[no-untyped-call]
        if subdivision is None:
            raise ValueError(f"unknown jurisdiction {value!r}: not an ISO 3166-2 subdivision code")
    elif len(value) != 2 or not value.isupper() or pycountry.countries.get(alpha_2=value) is None:
        raise ValueError(f"unknown jurisdiction {value!r}: use an ISO 3166-1 alpha-2 code such as DE or US")
    return value


Jurisdiction = Annotated[str, AfterValidator(_jurisdiction)]

Region = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,}(-[a-z0-9]+)+$", max_length=40)]

_CRON_FIELD = r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*"
Cron = Annotated[str, StringConstraints(pattern=rf"^{_CRON_FIELD}( {_CRON_FIELD}){{4}}$")]

# Kubernetes resource quantities, e.g. 500m, 4, 16Gi.
CpuQuantity = Annotated[str, StringConstraints(pattern=r"^\d+(\.\d+)?m?$")]
MemoryQuantity = Annotated[str, StringConstraints(pattern=r"^\d+(Ki|Mi|Gi|Ti)$")]
