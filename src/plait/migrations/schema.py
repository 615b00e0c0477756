"""Every table of every area, on one MetaData: what migrations are compared against."""

from plait.collect import event_store, replication
from plait.core import auth, sources
from plait.core.db import metadata
from plait.identity import graph, suggestions, suppression

__all__ = [
    "auth",
    "event_store",
    "graph",
    "metadata",
    "replication",
    "sources",
    "suggestions",
    "suppression",
]
