"""Deterministic webdataset tar writing.

webdataset's ``TarWriter`` stamps members with the current time, so two runs of
the same input give different bytes. Reproducible partitions need fixed member
metadata, which this writer sets; member order is the order samples arrive.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from typing import BinaryIO

# webdataset splits a member name at the first dot after the last slash:
# "<key>.<suffix>"; a dot in the key would move text into the suffix.
_FORBIDDEN_KEY_CHARS = (".", "/")


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class DeterministicTarWriter:
    """Write webdataset samples (``{"__key__": ..., "jpg": bytes, "sci.txt": str}``)."""

    def __init__(self, fileobj: BinaryIO):
        # The writer owns the stream's lifetime: close() ends the archive.
        self._tar = tarfile.open(  # noqa: SIM115
            fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT
        )
        self.samples = 0

    def write(self, sample: Mapping[str, object]) -> None:
        key = str(sample["__key__"])
        if not key or any(c in key for c in _FORBIDDEN_KEY_CHARS):
            raise ValueError(f"sample key {key!r} must be non-empty without '.' or '/'")
        for suffix, value in sample.items():
            if suffix.startswith("__"):
                continue
            if isinstance(value, str):
                data = value.encode("utf-8")
            elif isinstance(value, bytes | bytearray | memoryview):
                data = bytes(value)
            else:
                raise TypeError(f"sample {key}: member {suffix!r} must be bytes or str")
            self.add_member(f"{key}.{suffix}", data)
        self.samples += 1

    def add_member(self, name: str, data: bytes) -> None:
        self._tar.addfile(_member(name, len(data)), io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> DeterministicTarWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
