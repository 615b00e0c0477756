"""Every table of every area, on one MetaData: what migrations are compared against."""

from plait.collect import event_store, replication
from plait.core import auth, sources, users
from plait.core.db import metadata
from plait.identity import graph, suggestions, suppression
from plait.inbox import schema as inbox
from plait.web import login, sessions

__all__ = [
    "auth",
    "event_store",
    "graph",
    "inbox",
    "login",
    "metadata",
    "replication",
    "sessions",
    "sources",
    "suggestions",
    "suppression",
    "users",
]
