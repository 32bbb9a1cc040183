"""Validation of model names, versions (SemVer 2.0.0) and channel names, and version ordering."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from edgefm.registry.errors import InvalidInputError

# Names become S3 key segments and Kubernetes label values, so keep them to the intersection:
# lower-case, digits, '-', '_', '.', starting and ending alphanumeric, at most 63 characters.
_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$")
_CHANNEL_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$")
# The regular expression suggested by semver.org, without the optional leading 'v'.
_SEMVER_RE = re.compile(
    r"^(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name) or ".." in name:
        raise InvalidInputError(
            f"invalid model name {name!r}: use 1-63 lower-case letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return name


def validate_channel(channel: str) -> str:
    if not _CHANNEL_RE.match(channel):
        raise InvalidInputError(
            f"invalid channel {channel!r}: use 1-32 lower-case letters, digits or '-', "
            "starting with a letter (e.g. 'stable', 'canary')"
        )
    return channel


def validate_version(version: str) -> str:
    if not _SEMVER_RE.match(version):
        hint = " (drop the leading 'v')" if version.startswith("v") and _SEMVER_RE.match(version[1:]) else ""
        raise InvalidInputError(
            f"invalid version {version!r}: expected semantic version MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], "
            f"e.g. 1.4.0 or 2.0.0-rc.1{hint}"
        )
    return version


@total_ordering
@dataclass(frozen=True)
class SemVer:
    """SemVer precedence (build metadata ignored), for listing versions in order."""

    major: int
    minor: int
    patch: int
    pre: tuple[int | str, ...]
    text: str

    @classmethod
    def parse(cls, text: str) -> SemVer:
        m = _SEMVER_RE.match(validate_version(text))
        assert m is not None  # validate_version raised otherwise
        pre = tuple(int(p) if p.isdigit() else p for p in (m["pre"] or "").split(".") if p)
        return cls(int(m["major"]), int(m["minor"]), int(m["patch"]), pre, text)

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A release sorts after its pre-releases; numeric identifiers sort before alphanumeric ones.
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())
