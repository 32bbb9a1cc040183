"""Model registry: publish, promote, list, verify and mirror foundation-model versions in S3.

Public API for other edgefm code:

- :class:`edgefm.registry.settings.BucketSettings` — where a registry or mirror lives.
- :func:`edgefm.registry.channels.resolve_channel` — the version a channel points to.
"""

from edgefm.registry.channels import resolve_channel
from edgefm.registry.errors import RegistryError
from edgefm.registry.settings import BucketSettings

__all__ = ["BucketSettings", "RegistryError", "resolve_channel"]
