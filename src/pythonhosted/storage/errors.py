"""Storage failures reduced to what a caller decides on: missing, or unavailable."""

from __future__ import annotations


class StorageError(Exception):
    """Base class for storage failures."""


class NotFound(StorageError):
    """The store answered: no such object (404, or 403 as some S3 stores say for missing keys)."""


class StoreUnavailable(StorageError):
    """The store could not answer: 5xx, timeout, refused or dropped connection."""


class AlreadyExists(StorageError):
    """A create-only write found the key taken."""
