"""Plain data the guardrails work on: a resource as the engine describes it, with unknowns made explicit.

The policy functions never see pulumi_policy's proxies: the CrossGuard wrappers convert them first (see
`crossguard.py`), so every check is an ordinary typed function that tests call with dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

HUB_STACK: Final = "hub"
SITE_PREFIX: Final = "site-"


class Unknown:
    """A value the engine cannot know yet (preview of a value computed from another resource's output)."""

    _instance: Unknown | None = None

    def __new__(cls) -> Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown>"

    def __bool__(self) -> bool:
        # An unknown is never taken as "set": checks must test for it explicitly.
        return False


UNKNOWN: Final[Unknown] = Unknown()


@dataclass(frozen=True)
class Violation:
    """One finding: a message that names the resource, and the URN to attach it to (None: the stack)."""

    message: str
    urn: str | None = None


class NotApplicable(Exception):
    """Raised by a check that does not apply to this stack (e.g. a site-only check on the hub)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Resource:
    """A resource's type, name and (plain) properties, plus the URNs its properties depend on."""

    urn: str
    type: str
    name: str
    props: Mapping[str, Any]
    property_dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()
    # Resource options; None where the source does not say (the analyzer protocol carries `protect` but not
    # `retainOnDelete`, which only the engine's step events report).
    protect: bool | None = None
    retain_on_delete: bool | None = None

    @property
    def stack(self) -> str:
        return stack_of_urn(self.urn)

    @property
    def kind(self) -> str:
        """The last part of the type token: `Deployment`, `Bucket`, `UserPolicy`."""
        return self.type.rsplit(":", 1)[-1]

    @property
    def label(self) -> str:
        """How messages name the resource: kind, logical name and, for Kubernetes, the namespace."""
        ns = get(self.props, "metadata", "namespace")
        where = f" in namespace {ns}" if isinstance(ns, str) and ns else ""
        return f"{self.kind} '{self.name}'{where}"

    def get(self, *path: str | int) -> Any:
        return get(self.props, *path)


def get(value: Any, *path: str | int) -> Any:
    """Walks mappings and sequences; None where a key is missing, UNKNOWN where an unknown is crossed."""
    for step in path:
        if value is UNKNOWN:
            return UNKNOWN
        if isinstance(step, str) and isinstance(value, Mapping):
            value = value.get(step)
        elif isinstance(step, int) and isinstance(value, Sequence) and not isinstance(value, str | bytes):
            value = value[step] if -len(value) <= step < len(value) else None
        else:
            return None
    return value


def as_mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return []


def stack_of_urn(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<type>::<name>` → `<stack>`; empty if the URN is malformed."""
    parts = urn.split("::")
    head = parts[0].split(":")
    return head[2] if len(parts) >= 3 and len(head) == 3 and head[:2] == ["urn", "pulumi"] else ""


def site_of_stack(stack: str) -> str | None:
    """The value the `edgefm.io/site` label must carry in this stack: the site name, `hub`, or None."""
    if stack == HUB_STACK:
        return HUB_STACK
    if stack.startswith(SITE_PREFIX) and len(stack) > len(SITE_PREFIX):
        return stack.removeprefix(SITE_PREFIX)
    return None


def is_site_stack(stack: str) -> bool:
    return site_of_stack(stack) not in (None, HUB_STACK)


def stack_of(resources: Sequence[Resource]) -> str:
    """The stack a set of resources belongs to (the engine passes one stack at a time)."""
    for r in resources:
        stack = r.stack
        if stack:
            return stack
    return ""
