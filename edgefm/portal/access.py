"""Who may do what where: roles per site group, granted to identity-provider groups; local users for demos.

A site group is a label selector over site labels. A binding grants one role on one site group to one IdP
group (the `groups` claim of an OpenID Connect ID token, or the groups of a local user). Roles are ordered:
each includes the ones before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import Field, ValidationError, model_validator

from edgefm.model.fields import DnsLabel, Model
from edgefm.model.placement import LabelSelector
from edgefm.model.problems import ConfigError, Problem, from_validation_error

Role = Literal["viewer", "operator", "approver", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "approver", "admin")
RANK: dict[str, int] = {role: i + 1 for i, role in enumerate(ROLES)}


class SiteGroup(Model):
    name: DnsLabel
    selector: LabelSelector = LabelSelector()


class RoleBinding(Model):
    # The identity provider's group name, as it appears in the groups claim.
    group: str = Field(min_length=1, max_length=256)
    role: Role
    site_group: DnsLabel


class AccessPolicy(Model):
    api_version: Literal["edgefm.io/v1"]
    kind: Literal["PortalAccess"]
    # The ID-token claim that lists a user's groups.
    groups_claim: str = "groups"
    site_groups: list[SiteGroup]
    bindings: list[RoleBinding]

    @model_validator(mode="after")
    def _known_groups(self) -> Self:
        names = [g.name for g in self.site_groups]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"duplicate site group {', '.join(dups)}")
        unknown = sorted({b.site_group for b in self.bindings} - set(names))
        if unknown:
            raise ValueError(f"bindings name unknown site group {', '.join(unknown)}")
        return self


class LocalUser(Model):
    username: DnsLabel
    # An argon2 hash (`edgefm portal hash-password`); plain passwords are never stored.
    password_hash: str = Field(pattern=r"^\$argon2(id|i|d)\$")
    groups: list[str] = Field(default_factory=list)
    display_name: str = ""


class UsersFile(Model):
    users: list[LocalUser]


def _load_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError([Problem(str(path), "", "file not found")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(str(path), "", f"not valid YAML: {exc}")]) from None


def load_access(path: Path) -> AccessPolicy:
    try:
        return AccessPolicy.model_validate(_load_yaml(path))
    except ValidationError as exc:
        raise ConfigError(from_validation_error(str(path), "", exc)) from None


def load_users(path: Path) -> dict[str, LocalUser]:
    try:
        users = UsersFile.model_validate(_load_yaml(path)).users
    except ValidationError as exc:
        raise ConfigError(from_validation_error(str(path), "", exc)) from None
    names = [u.username for u in users]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ConfigError([Problem(str(path), "users", f"duplicate username {', '.join(dups)}")])
    return {u.username: u for u in users}


_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(user: LocalUser | None, password: str) -> bool:
    """Constant work whether or not the user exists, so response time does not reveal usernames."""
    target = user.password_hash if user is not None else _DUMMY_HASH
    try:
        ok = _hasher.verify(target, password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and user is not None


_DUMMY_HASH = _hasher.hash("edgefm-no-such-user")


@dataclass(frozen=True)
class Principal:
    """A signed-in person: who, which IdP groups, and how they signed in."""

    username: str
    groups: tuple[str, ...]
    via: Literal["local", "oidc"]
    display_name: str = ""


class Access:
    """Answers 'may this principal act with this role on a site with these labels?'."""

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy
        self._selectors = {g.name: g.selector for g in policy.site_groups}

    def role_on(self, who: Principal, labels: Mapping[str, str]) -> int:
        """The highest role rank the principal holds on a site with `labels` (0: none)."""
        best = 0
        for b in self.policy.bindings:
            if b.group in who.groups and self._selectors[b.site_group].matches(labels):
                best = max(best, RANK[b.role])
        return best

    def can(self, who: Principal, role: Role, labels: Mapping[str, str]) -> bool:
        return self.role_on(who, labels) >= RANK[role]

    def can_all(self, who: Principal, role: Role, sites: Iterable[Mapping[str, str]]) -> bool:
        return all(self.can(who, role, labels) for labels in sites)

    def highest(self, who: Principal) -> int:
        """The highest role held on any site group (what menus show)."""
        return max((RANK[b.role] for b in self.policy.bindings if b.group in who.groups), default=0)

    def is_admin(self, who: Principal) -> bool:
        """Admin on a group that selects every site (audit log, fleet-wide settings)."""
        return any(
            b.group in who.groups and b.role == "admin" and self._selectors[b.site_group] == LabelSelector()
            for b in self.policy.bindings
        )
