"""Files at a path or object-store URL: atomic writes, reads, Parquet, DuckDB access.

Atomic writes: locally a temp file beside the target, renamed into place on success and
removed on failure. On object stores (s3fs) the upload becomes visible only when it is
closed successfully; on failure it is discarded, never committed half-written.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq


def is_local(url: str) -> bool:
    return fsspec.utils.get_protocol(str(url)) in ("file", "local")


def local_path(url: str) -> str:
    url = str(url)
    return url[len("file://") :] if url.startswith("file://") else url


def remove_stale_temps(url: str) -> list[str]:
    """Remove what killed writers of ``url`` left (``<file>.tmp-*``); the names removed.
    Only for a local file: on an object store an unfinished upload is never visible (an
    aborted multipart upload is removed by the bucket's lifecycle rule)."""
    if not is_local(url):
        return []
    path = local_path(url)
    folder, prefix = os.path.dirname(os.path.abspath(path)), os.path.basename(path) + ".tmp-"
    removed = []
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(prefix):
                os.remove(os.path.join(folder, name))
                removed.append(name)
    return removed


@contextmanager
def atomic_open(url: str, mode: str = "wb") -> Iterator[IO]:
    if is_local(url):
        path = local_path(url)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, mode) as f:
                yield f
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    fs, path = fsspec.core.url_to_fs(str(url))
    f = fs.open(path, mode)
    try:
        yield f
    except BaseException:
        discard = getattr(f, "discard", None)
        if discard is not None:
            discard()  # abort the multipart upload: nothing becomes visible
            f.closed = True  # discarded: closing would upload what is left
        raise
    f.close()


class HashingWriter:
    """A binary writer that passes bytes through and keeps their sha256 (a shard's digest,
    computed while it is written, so nothing reads it back)."""

    def __init__(self, target: IO):
        import hashlib

        self._target, self._digest = target, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._target.write(data)

    def writelines(self, pieces) -> None:
        for piece in pieces:
            self.write(piece)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def open_read(url: str, mode: str = "rb") -> IO:
    if is_local(url):
        return open(local_path(url), mode)
    return fsspec.open(str(url), mode).open()


def shard_size(url: str) -> int:
    """Size in bytes of a local file or an object (for progress over a streamed shard)."""
    if is_local(url):
        return os.path.getsize(local_path(url))
    fs, path = fsspec.core.url_to_fs(str(url))
    return int(fs.size(path))


# -- Parquet --------------------------------------------------------------------------


def parquet_bytes(table: pa.Table, compression: str = "snappy") -> bytes:
    """A table as Parquet file bytes (for writers that place them themselves)."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression=compression)
    return buffer.getvalue()


def write_parquet(url: str, table: pa.Table, compression: str = "snappy") -> None:
    """Write ``table`` to ``url`` atomically."""
    data = parquet_bytes(table, compression)
    with atomic_open(str(url)) as f:
        f.write(data)


def read_parquet(url: str) -> pa.Table:
    """The Parquet file at a path or URL, read whole."""
    with open_read(str(url)) as f:
        return pq.read_table(io.BytesIO(f.read()))


# -- DuckDB reading remote files ----------------------------------------------------------


def _http_filesystem():
    """fsspec's HTTP filesystem plus the ``modified`` DuckDB asks every filesystem for
    (imported on use: aiohttp costs a tenth of a second at every worker start)."""
    from fsspec.implementations.http import HTTPFileSystem

    class _HTTPFileSystem(HTTPFileSystem):
        def modified(self, path: str) -> datetime:
            return datetime.fromtimestamp(0, tz=UTC)

    return _HTTPFileSystem()


def register_filesystem(connection, url: str) -> None:
    """Let a DuckDB ``connection`` read ``url``'s scheme through fsspec (no-op for local
    paths): DuckDB cannot download its own extensions here."""
    protocol = fsspec.utils.get_protocol(url)
    if protocol in ("file", "local"):
        return
    if protocol in ("http", "https"):
        connection.register_filesystem(_http_filesystem())
    else:
        connection.register_filesystem(fsspec.filesystem(protocol))


class UnsafePath(ValueError):
    """A name from someone else's data that would not stay under its root folder."""


def safe_join(root: str | os.PathLike, name: str) -> Path:
    """``root/name`` for a relative name from an annotation file (``a.jpg``,
    ``class/a.jpg``); an absolute name, one with ``..``, a NUL or another control
    character, or a backslash, raises :class:`UnsafePath` naming it. Links inside the root
    are not followed here: the root is ours."""
    if not name or any(ord(c) < 32 or c == "\x7f" for c in name):
        raise UnsafePath(f"file name {name!r} is empty or holds a control character")
    if "\\" in name or name.startswith("/") or PurePosixPath(name).is_absolute():
        raise UnsafePath(f"file name {name!r} is absolute or uses a backslash")
    parts = PurePosixPath(name).parts
    if any(part in ("..", ".") for part in parts) or ":" in parts[0]:
        raise UnsafePath(f"file name {name!r} would leave the image folder")
    return Path(root, *parts)
