"""A minimal streaming tar reader that keeps each member's raw bytes.

Re-captioning copies every input member through unchanged, so the fastest and
most faithful copy is the member's own blocks: header(s), data and padding, byte
for byte. This reader yields them, with the few fields we need parsed (name,
size, type, mtime, mode). It understands ustar, PAX extended headers (``x``,
``g``) and GNU long names (``L``), and checks header checksums so that a file
that is not a tar fails loudly. New members are built with ``tarfile``.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

BLOCK = 512
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)
_REGULAR = (b"0", b"\0", b"7")


class TarFormatError(ValueError):
    """The stream is not a readable tar archive."""


@dataclass
class RawMember:
    name: str
    data: bytes
    raw: bytes  # every block of the member: extended headers, header, data, padding
    mtime: int
    mode: int
    is_file: bool


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def _number(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256
        value = int.from_bytes(field[1:], "big")
        return value
    text = field.rstrip(b"\0 ").strip()
    return int(text, 8) if text else 0


def _read_exact(f: BinaryIO, n: int, offset: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = f.read(n - got)
        if not chunk:
            raise TarFormatError(
                f"unexpected end of file at byte {offset + got} (wanted {n - got} more)"
            )
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _pax_records(data: bytes) -> dict[str, str]:
    records, pos = {}, 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode("utf-8")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def iter_raw_members(f: BinaryIO) -> Iterator[RawMember]:
    offset = 0
    pending: list[bytes] = []
    pax: dict[str, str] = {}
    long_name: str | None = None
    while True:
        header = f.read(BLOCK)
        if not header or header == b"\0" * BLOCK:
            if pending:
                raise TarFormatError(f"archive ends inside a member at byte {offset}")
            return
        if len(header) < BLOCK:
            header += _read_exact(f, BLOCK - len(header), offset + len(header))
        stored = _number(header[148:156])
        computed = sum(header[:148]) + 8 * 32 + sum(header[156:])
        if stored != computed:
            raise TarFormatError(f"not a tar archive: bad header checksum at byte {offset}")
        size = _number(header[124:136])
        kind = header[156:157]
        body = _read_exact(f, _padded(size), offset + BLOCK) if size else b""
        offset += BLOCK + len(body)
        if kind in (b"x", b"L"):
            pending.append(header + body)
            if kind == b"x":
                pax.update(_pax_records(body[:size]))
            else:
                long_name = body[:size].rstrip(b"\0").decode("utf-8", "surrogateescape")
            continue
        if kind == b"g":  # global header: applies to all later members; pass it through
            yield RawMember("", b"", header + body, 0, 0, False)
            continue
        name = header[0:100].rstrip(b"\0").decode("utf-8", "surrogateescape")
        if header[257:262] == b"ustar":
            prefix = header[345:500].rstrip(b"\0").decode("utf-8", "surrogateescape")
            if prefix:
                name = f"{prefix}/{name}"
        name = pax.get("path", long_name or name)
        size = int(pax.get("size", size))
        raw = b"".join(pending) + header + body
        yield RawMember(
            name,
            body[:size],
            raw,
            int(float(pax.get("mtime", _number(header[136:148])))),
            _number(header[100:108]),
            kind in _REGULAR,
        )
        pending, pax, long_name = [], {}, None


def member_bytes(name: str, data: bytes, mtime: int = 0, mode: int = 0o644) -> bytes:
    """A new regular-file member (header, data, padding), deterministic."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), mtime, mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    return header + data + b"\0" * (_padded(len(data)) - len(data))
