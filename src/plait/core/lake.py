"""The event lake: Parquet files partitioned by day under a local directory or any
filesystem pyarrow knows (``s3://…``). Files are written under a temporary name and then
renamed, so a reader never sees half a file and a re-run rewrites the same name."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from plait.core.ids import uuid7


def lake_filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of a lake location (a path or a URI)."""
    if "://" not in location:
        path = Path(location).expanduser().resolve()
        return pafs.LocalFileSystem(), str(path)
    return pafs.FileSystem.from_uri(location)


TEMPORARY_DIR = "_tmp"


def write_parquet(table: pa.Table, location: str, relative_path: str) -> str:
    """Write ``table`` to ``relative_path`` under the lake, atomically; returns the full path.

    The file is written in the lake's ``_tmp`` folder (outside every dataset) and renamed
    into place, so a crash leaves at most a stray temporary file, which
    :func:`remove_stale_temporaries` deletes later.
    """
    filesystem, root = lake_filesystem(location)
    final = f"{root.rstrip('/')}/{relative_path}"
    parent = final.rsplit("/", 1)[0]
    scratch = f"{root.rstrip('/')}/{TEMPORARY_DIR}"
    temporary = f"{scratch}/{uuid7()}.parquet"
    filesystem.create_dir(parent, recursive=True)
    filesystem.create_dir(scratch, recursive=True)
    if isinstance(filesystem, pafs.LocalFileSystem):
        with open(temporary, "wb") as handle:
            pq.write_table(table, handle, compression="zstd")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
        _fsync_directory(parent)
    else:
        pq.write_table(table, temporary, filesystem=filesystem, compression="zstd")
        filesystem.move(temporary, final)
    return final


def remove_stale_temporaries(location: str, older_than_seconds: float = 600) -> int:
    """Delete temporary files left by writers that died; returns how many."""
    filesystem, root = lake_filesystem(location)
    selector = pafs.FileSelector(f"{root.rstrip('/')}/{TEMPORARY_DIR}", allow_not_found=True)
    cutoff = time.time() - older_than_seconds
    removed = 0
    for info in filesystem.get_file_info(selector):
        modified = info.mtime.timestamp() if info.mtime else 0
        if info.type == pafs.FileType.File and modified < cutoff:
            filesystem.delete_file(info.path)
            removed += 1
    return removed


def _fsync_directory(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def dataset_path(location: str, name: str) -> str:
    """Where a dataset (``events``, ``identities``) lives in the lake."""
    _filesystem, root = lake_filesystem(location)
    return f"{root.rstrip('/')}/{name}"


HISTORY_DATASET = "history"
"""The customers' sessions and conversions analytics derive from the events and keep
(``analytics.history``): personal data too, so an erasure drops it with the events."""


def remove_dataset(location: str, name: str) -> None:
    """Delete a dataset of the lake (``history``) and every file in it."""
    filesystem, _ = lake_filesystem(location)
    filesystem.delete_dir_contents(dataset_path(location, name), missing_dir_ok=True)


def remove_rows(location: str, directory: str, column: str, values: list[str]) -> int:
    """Rewrite the files under ``directory`` (relative to the lake) without the rows whose
    ``column`` is in ``values``; returns how many rows were removed. Each file is replaced
    atomically, under the same name."""
    filesystem, root = lake_filesystem(location)
    base = f"{root.rstrip('/')}/"
    selector = pafs.FileSelector(base + directory, allow_not_found=True, recursive=True)
    wanted = pa.array(values, pa.string())
    removed = 0
    for info in filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
            continue
        table = pq.read_table(info.path, filesystem=filesystem)
        keep = pc.invert(pc.is_in(table[column], value_set=wanted))
        kept = table.filter(keep)
        if kept.num_rows < table.num_rows:
            removed += table.num_rows - kept.num_rows
            write_parquet(kept, location, info.path[len(base) :])
    return removed
