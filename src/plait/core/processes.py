"""Plait's background processes: how they show themselves to operators."""

from __future__ import annotations

import contextlib
from pathlib import Path


def name_process(name: str) -> None:
    """Show ``name`` as this process's command name (Linux: ``ps``, ``top``), so operators
    and the ingest bench can tell Plait's background processes from the server's workers."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(name[:15])
