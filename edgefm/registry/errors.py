"""Errors the registry reports to a person: each carries a one-line message, never a traceback."""

from __future__ import annotations


class RegistryError(Exception):
    """Base class; ``str(err)`` is the one-line message the CLI prints."""


class InvalidInputError(RegistryError):
    """A model name, version, channel or setting is malformed."""


class StorageError(RegistryError):
    """The S3 endpoint, bucket or credentials are not usable."""


class NotFoundError(RegistryError):
    """An unknown model, version or channel."""


class VersionExistsError(RegistryError):
    """Versions are immutable: the version already has a manifest."""


class UploadInterruptedError(RegistryError):
    """A publish stopped part-way; running it again resumes it."""


class IntegrityError(RegistryError):
    """Bytes read back do not match the manifest."""
