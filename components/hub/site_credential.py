"""Per-site registry access shared by both hub flavors: read-only statements and derived credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import pulumi

# Labels each access shard's Secret on the hub, whose `users` the registry's reconciler turns into MinIO users.
SITE_ACCESS_LABEL = "edgefm.io/site-access"
# Labels a shard's objects with the access shard they belong to.
ACCESS_SHARD_LABEL = "edgefm.io/access-shard"
READ_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion"]
LIST_ACTIONS = ["s3:ListBucket", "s3:GetBucketLocation"]


@dataclass(frozen=True)
class SiteCredential:
    access_key_id: pulumi.Input[str]
    secret_access_key: pulumi.Output[str]


def site_read_statements(bucket_arn: str) -> list[dict[str, Any]]:
    """Read models and channel pointers; no write, delete or wildcard action anywhere."""
    return [
        {"Sid": "ReadModels", "Effect": "Allow", "Action": READ_ACTIONS, "Resource": [f"{bucket_arn}/*"]},
        {"Sid": "ListRegistry", "Effect": "Allow", "Action": LIST_ACTIONS, "Resource": [bucket_arn]},
    ]


def derive_secret(seed: str, purpose: str, length: int = 40) -> str:
    """Deterministic per-purpose secret: the hub can re-issue the same keys after a state loss, and
    rotating the seed rotates every derived key at once."""
    return hmac.new(seed.encode(), purpose.encode(), hashlib.sha256).hexdigest()[:length]


def ssha_entry(user: str, password: str) -> str:
    """An htpasswd line in nginx's {SSHA} form; the salt is derived from the user so the line is stable
    across updates (a random salt would show a diff on every preview)."""
    salt = hashlib.sha256(f"edgefm-htpasswd:{user}".encode()).digest()[:8]
    digest = hashlib.sha1(password.encode() + salt).digest()
    return f"{user}:{{SSHA}}{base64.b64encode(digest + salt).decode()}"
