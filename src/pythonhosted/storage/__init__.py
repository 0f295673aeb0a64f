"""Object stores opened from URLs, and the primary ▸ archive fallback pair.

Every store goes through obstore (one library for local, memory, S3 and GCS). This package adds
what obstore leaves to the caller: URL parsing with safe defaults, bounded timeouts, custom
metadata on local directories (obstore's LocalStore cannot store attributes), error classes the
services can act on, and the fallback rules of the files edge.
"""

from pythonhosted.storage.directory import DirectoryStore
from pythonhosted.storage.errors import NotFound, StorageError, StoreUnavailable
from pythonhosted.storage.fallback import Backend, Fallback, StorePair
from pythonhosted.storage.stores import COMMAND_TIMEOUTS, ObjectInfo, Store, Timeouts
from pythonhosted.storage.urls import open_store

__all__ = [
    "COMMAND_TIMEOUTS",
    "Backend",
    "DirectoryStore",
    "Fallback",
    "NotFound",
    "ObjectInfo",
    "StorageError",
    "Store",
    "StorePair",
    "StoreUnavailable",
    "Timeouts",
    "open_store",
]
