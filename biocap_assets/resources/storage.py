"""One object-storage root for every artifact: ``file://...`` or ``s3://bucket/prefix``.

Paths are universal-pathlib ``UPath`` objects, so code writes the same way to a
local folder and to S3 (s3fs; ``AWS_ENDPOINT_URL`` selects an S3-compatible
server). Writes are atomic: locally a temp file renamed into place; on object
stores a single upload, which is only visible once complete.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import dagster as dg
import fsspec
from pydantic import Field
from upath import UPath

from biocap_assets.common.files import atomic_open, is_local
from biocap_assets.resources.preflight import storage_problems

_CHECKED: set[str] = set()


class StorageResource(dg.ConfigurableResource):
    """The storage root that shards, checkpoints, Parquet tables and reports live under."""

    root_url: str = Field(description="file:///abs/path or s3://bucket/prefix")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Before a run writes anything: the root must be writable (`biocap check`'s test),
        once per process and root."""
        if self.root_url in _CHECKED:
            return
        problems = storage_problems(self.root_url)
        if problems:
            raise dg.Failure(description="; ".join(str(p) for p in problems), allow_retries=False)
        _CHECKED.add(self.root_url)

    @property
    def is_local(self) -> bool:
        return is_local(self.root_url)

    @property
    def protocol(self) -> str:
        return fsspec.utils.get_protocol(self.root_url)

    @property
    def root(self) -> UPath:
        return UPath(self.root_url)

    def path(self, *parts: str) -> UPath:
        return self.root.joinpath(*parts)

    @contextmanager
    def open_atomic(self, *parts: str, mode: str = "wb") -> Iterator[IO]:
        """Open ``parts`` for writing; readers see the old file or the whole new one."""
        with atomic_open(str(self.path(*parts)), mode) as f:
            yield f

    def write_bytes(self, *parts: str, data: bytes) -> UPath:
        with self.open_atomic(*parts) as f:
            f.write(data)
        return self.path(*parts)
