"""Secrets: random ones kept in Pulumi state (encrypted), and marking a value secret with its type kept."""

from __future__ import annotations

from typing import Literal

import pulumi

from components.k8s.dynamic_providers import RandomSecret


def secret_output(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """`Output.secret` for a string input, with a precise type (the SDK's own signature loses it)."""
    out: pulumi.Output[str] = pulumi.Output.secret(value)
    return out


def random_secret(name: str, parent: pulumi.Resource, encoding: Literal["hex", "base64"] = "hex") -> pulumi.Output[str]:
    """256 random bits that stay the same across updates until the resource is replaced."""
    return secret_output(RandomSecret(name, encoding=encoding, opts=pulumi.ResourceOptions(parent=parent)).value)
