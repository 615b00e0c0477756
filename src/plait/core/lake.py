"""The event lake: Parquet files partitioned by day under a local directory or any
filesystem pyarrow knows (``s3://…``). Files are written under a temporary name and then
renamed, so a reader never sees half a file and a re-run rewrites the same name."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from plait.core.ids import uuid7


def lake_filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and root path of a lake location (a path or a URI)."""
    if "://" not in location:
        path = Path(location).expanduser().resolve()
        return pafs.LocalFileSystem(), str(path)
    return pafs.FileSystem.from_uri(location)


def write_parquet(table: pa.Table, location: str, relative_path: str) -> str:
    """Write ``table`` to ``relative_path`` under the lake, atomically; returns the full path."""
    filesystem, root = lake_filesystem(location)
    final = f"{root.rstrip('/')}/{relative_path}"
    parent = final.rsplit("/", 1)[0]
    temporary = f"{parent}/.tmp-{uuid7()}.parquet"
    filesystem.create_dir(parent, recursive=True)
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


def _fsync_directory(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def dataset_path(location: str, name: str) -> str:
    """Where a dataset (``events``, ``identities``) lives in the lake."""
    filesystem, root = lake_filesystem(location)
    del filesystem
    return f"{root.rstrip('/')}/{name}"
