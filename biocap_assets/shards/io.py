"""Atomic writes to a path or object-store URL, shared by the storage resource and workers.

Locally a temp file beside the target, renamed into place on success and removed
on failure. On object stores (s3fs) the upload becomes visible only when it is
closed successfully; on failure it is discarded, never committed half-written.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import fsspec


def is_local(url: str) -> bool:
    return fsspec.utils.get_protocol(str(url)) in ("file", "local")


def local_path(url: str) -> str:
    url = str(url)
    return url[len("file://") :] if url.startswith("file://") else url


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
