"""Secrets: random ones kept in Pulumi state (encrypted), and marking a value secret with its type kept."""

from __future__ import annotations

from typing import Literal

import pulumi
import pulumi_command as command

# POSIX tools only: the command text is a resource input, so it must not vary between machines.
_GENERATORS = {
    "hex": "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'",
    # 32 raw bytes, base64: the form MinIO's static KMS key takes.
    "base64": "head -c 32 /dev/urandom | base64 | tr -d '\\n'",
}


def secret_output(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """`Output.secret` for a string input, with a precise type (the SDK's own signature loses it)."""
    out: pulumi.Output[str] = pulumi.Output.secret(value)
    return out


def random_secret(name: str, parent: pulumi.Resource, encoding: Literal["hex", "base64"] = "hex") -> pulumi.Output[str]:
    """256 random bits that stay the same across updates until the resource is replaced."""
    generated = command.local.Command(
        name,
        create=_GENERATORS[encoding],
        logging=command.local.Logging.NONE,
        opts=pulumi.ResourceOptions(parent=parent, additional_secret_outputs=["stdout"]),
    )
    return secret_output(generated.stdout)
