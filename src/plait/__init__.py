"""Plait: one thread per customer across every channel.

Collect every touchpoint, resolve who is who, measure which channels work, serve
customers from one inbox, and act on it.
"""

__version__ = "0.1.0"
