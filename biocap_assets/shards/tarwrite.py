"""Webdataset shards written reproducibly, by webdataset's own ``TarWriter``.

TreeOfLife-10M's shards were written by webdataset (``ShardWriter``), which orders a
sample's members by suffix. ``TarWriter(mtime=0, user="", group="")`` gives the same
bytes on every run; this wrapper adds only a check of the sample key (webdataset splits
a member name at the first dot of its basename, so a key with a dot or a slash would move
text into the suffix) and the encoding of text members.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import BinaryIO

_FORBIDDEN_KEY_CHARS = (".", "/")


class DeterministicTarWriter:
    """Write webdataset samples (``{"__key__": ..., "jpg": bytes, "sci.txt": str}``)."""

    def __init__(self, fileobj: BinaryIO):
        # imported here: webdataset imports torch (1 s), and the Definitions reach this
        # module through the demo world without writing a shard
        import webdataset as wds

        self._writer = wds.TarWriter(fileobj, encoder=False, mtime=0, user="", group="")
        self.samples = 0

    def write(self, sample: Mapping[str, object]) -> None:
        key = str(sample["__key__"])
        if not key or any(c in key for c in _FORBIDDEN_KEY_CHARS):
            raise ValueError(f"sample key {key!r} must be non-empty without '.' or '/'")
        encoded: dict[str, object] = {"__key__": key}
        for suffix, value in sample.items():
            if suffix.startswith("__"):
                continue
            if isinstance(value, str):
                encoded[suffix] = value.encode("utf-8")
            elif isinstance(value, bytes | bytearray | memoryview):
                encoded[suffix] = bytes(value)
            else:
                raise TypeError(f"sample {key}: member {suffix!r} must be bytes or str")
        self._writer.write(encoded)
        self.samples += 1

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> DeterministicTarWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
